/*
 * bench/enroll's CMP client: THREADS threads, each enrolling for SECONDS
 * with OpenSSL's own CMP client (what openssl cmp runs), one transaction
 * after another: ir with MAC protection (the template's secret), the
 * certificate checked against the CA, certConf, pkiConf. Each thread has
 * one EC P-256 key made beforehand (a client's key generation is not the
 * CA's work) and a subject of its own per request. Prints
 *
 *   threads T seconds S certs N rate R errors E cpu C
 *
 * (C: this process's CPU seconds, user and system)
 *
 *   keyward-bench-enroll HOST:PORT PATH REFERENCE SECRET CA.pem THREADS SECONDS
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/cmp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "clock.h"

static const char *host, *path, *ref, *secret;
static int port;
static X509 *ca;
static double stop_at;
static atomic_long certs, errors;

static int quiet(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
	(void)func;
	(void)file;
	(void)line;
	(void)level;
	(void)msg;
	return 1;
}

static void *worker(void *arg)
{
	long id = (long)arg;
	EVP_PKEY *key = EVP_EC_gen("P-256");
	OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
	EVP_PKEY *ca_key = X509_get0_pubkey(ca);

	if (!key || !ctx || !OSSL_CMP_CTX_set1_server(ctx, host) || !OSSL_CMP_CTX_set_serverPort(ctx, port) ||
	    !OSSL_CMP_CTX_set1_serverPath(ctx, path) || !OSSL_CMP_CTX_set_log_cb(ctx, quiet)) {
		fprintf(stderr, "keyward-bench-enroll: cannot set up a CMP client\n");
		exit(1);
	}
	for (long i = 0; now() < stop_at; i++) {
		char cn[64];
		X509_NAME *subject = X509_NAME_new();
		X509 *cert;

		snprintf(cn, sizeof cn, "bench-%ld-%ld.example", id, i);
		X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (unsigned char *)cn, -1, -1, 0);
		if (!OSSL_CMP_CTX_reinit(ctx) ||
		    !OSSL_CMP_CTX_set1_referenceValue(ctx, (const unsigned char *)ref, (int)strlen(ref)) ||
		    !OSSL_CMP_CTX_set1_secretValue(ctx, (const unsigned char *)secret, (int)strlen(secret)) ||
		    !EVP_PKEY_up_ref(key) || !OSSL_CMP_CTX_set0_newPkey(ctx, 1, key) ||
		    !OSSL_CMP_CTX_set1_subjectName(ctx, subject) ||
		    !OSSL_CMP_CTX_set_option(ctx, OSSL_CMP_OPT_MSG_TIMEOUT, 30)) {
			fprintf(stderr, "keyward-bench-enroll: cannot set up a request\n");
			exit(1);
		}
		X509_NAME_free(subject);
		cert = OSSL_CMP_exec_IR_ses(ctx);
		if (cert && X509_verify(cert, ca_key) == 1) {
			atomic_fetch_add(&certs, 1);
		} else {
			if (atomic_fetch_add(&errors, 1) < 3) {
				fprintf(stderr, "keyward-bench-enroll: ir failed: ");
				ERR_print_errors_fp(stderr);
			}
		}
		ERR_clear_error();
	}
	OSSL_CMP_CTX_free(ctx);
	EVP_PKEY_free(key);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t tid[256];
	struct rusage ru;
	long threads;
	double secs, start;
	FILE *f;
	char *colon;

	if (argc != 8 || !(colon = strrchr(argv[1], ':'))) {
		fprintf(stderr, "usage: keyward-bench-enroll HOST:PORT PATH REFERENCE SECRET CA.pem THREADS SECONDS\n");
		return 2;
	}
	*colon = '\0';
	host = argv[1];
	port = atoi(colon + 1);
	path = argv[2];
	ref = argv[3];
	secret = argv[4];
	threads = atol(argv[6]);
	secs = atof(argv[7]);
	if (threads < 1 || threads > 256 || secs <= 0 || !(f = fopen(argv[5], "r")) ||
	    !(ca = PEM_read_X509(f, NULL, NULL, NULL))) {
		fprintf(stderr, "keyward-bench-enroll: bad arguments or CA certificate\n");
		return 2;
	}
	fclose(f);
	start = now();
	stop_at = start + secs;
	for (long i = 0; i < threads; i++)
		pthread_create(&tid[i], NULL, worker, (void *)i);
	for (long i = 0; i < threads; i++)
		pthread_join(tid[i], NULL);
	secs = now() - start;
	getrusage(RUSAGE_SELF, &ru);
	printf("threads %ld seconds %.2f certs %ld rate %.1f errors %ld cpu %.3f\n", threads, secs, atomic_load(&certs),
	       (double)atomic_load(&certs) / secs, atomic_load(&errors),
	       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	X509_free(ca);
	return 0;
}
