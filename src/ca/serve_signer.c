/*
 * keyward-ca serve: the delegated OCSP signer. Its key is made in the HSM
 * (in a child process: see serve_signer_key_prepare_apart), its
 * certificate issued from the OCSPSigning template through the CA's one
 * issuance path (for ocsp_signer_validity_minutes, if set), and renewed
 * when less than ocsp_signer_renew_percent of its life is left; the
 * cached answers are signed again by the new one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "ca/serve_internal.h"
#include "common/log.h"

/*
 * A certificate for the signer's key (priv, in the HSM) from the
 * OCSPSigning template, issued through the CA's one issuance path: a
 * request signed by that key, checked and recorded as any other; NULL
 * with the reason.
 */
static X509 *issue_signer(struct server *sv, EVP_PKEY *priv, EVP_PKEY *pub)
{
	const struct ca_template *named = ca_template_named(sv->ca, "OCSPSigning");
	struct ca_template short_lived;
	const struct ca_template *t = named;
	X509_REQ *csr = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	struct ca_key_decoder *d = ca_key_decoder_new();
	struct ca_request *req = NULL;
	struct ca_issued issued = {0};
	unsigned char *der = NULL;
	const unsigned char *p;
	char cn[96];
	int len;
	X509 *ret = NULL;

	snprintf(cn, sizeof cn, "%.48s OCSP Responder", sv->ca->conf.name);
	if (named && sv->sc.signer_validity) {
		short_lived = *named;
		short_lived.validity_seconds = sv->sc.signer_validity;
		t = &short_lived;
	}
	if (!t || !d)
		goto out;
	if (!csr || !name ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_REQ_set_subject_name(csr, name) || !X509_REQ_set_pubkey(csr, pub) ||
	    X509_REQ_sign(csr, priv, ca_md(&sv->ca->conf)) <= 0 || (len = i2d_X509_REQ(csr, &der)) <= 0) {
		ca_error("cannot make the OCSP signer's request");
		goto out;
	}
	if (!(req = ca_request_parse(der, (size_t)len, d)) || ca_issue(sv->ca, t, req, &issued))
		goto out;
	p = issued.der;
	if (!(ret = d2i_X509(NULL, &p, (long)issued.der_len)))
		ca_error("cannot read back the OCSP signer's certificate %s", issued.serial);
	else
		kw_log(KW_LOG_INFO, "keyward-ca serve: issued OCSP signing certificate %s", issued.serial);
out:
	ERR_clear_error();
	ca_issued_free(&issued);
	ca_request_free(req);
	ca_key_decoder_free(d);
	OPENSSL_free(der);
	X509_NAME_free(name);
	X509_REQ_free(csr);
	return ret;
}

/* Before the CA opens the token for itself (serve.h). */
int serve_signer_key_prepare(const char *dir, const struct serve_conf *sc)
{
	struct ca_conf *c = calloc(1, sizeof *c);
	struct ca_token *t = NULL;
	EVP_PKEY *priv = NULL, *pub = NULL;
	char file[CA_NAME_MAX + 1], label[CA_NAME_MAX + 8];
	const char *type = sc->signer_key_type;
	int rc = -1;

	if (!c)
		return ca_error("out of memory");
	if (ca_conf_load(c, dir) || ca_token_open(c, &t))
		goto out;
	if (!strncmp(c->key, "pkcs11:", 7)) {
		ca_error("ocsp_signer = delegated needs the CA key named by a label, not a pkcs11: URI; "
			 "set ocsp_signer = ca in serve.conf");
		goto out;
	}
	ca_file_name(c->name, file, sizeof file);
	snprintf(label, sizeof label, "ocsp-%s", file);
	if (ca_token_key(t, label, &priv, &pub) == 0) {
		rc = 0;
		goto out;
	}
	if (!type[0]) {
		/* the CA key's kind */
		if (ca_token_key(t, c->key, &priv, &pub))
			goto out;
		type = EVP_PKEY_is_a(pub, "RSA") ? "RSA-3072" : "EC-P256";
	}
	/*
	 * libp11's keys go before its context: freed after it, they read and
	 * write what it freed (the heap corruption once blamed on loading the
	 * module twice, test_ca_signer_key)
	 */
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	priv = pub = NULL;
	ca_token_close(t);
	t = NULL;
	kw_log(KW_LOG_INFO, "keyward-ca serve: making the OCSP signing key \"%s\" (%s) on the token", label, type);
	rc = ca_token_generate(c, type, label);
out:
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	ca_token_close(t);
	free(c);
	return rc;
}

/*
 * serve_signer_key_prepare in a child process: the module is loaded,
 * finalized and loaded again there, never in this process. keyward-pkcs11.so
 * survives that (test_pkcs11_reload); PKCS#11 does not promise it of
 * every module, and the child costs little once per start.
 */
int serve_signer_key_prepare_apart(const char *dir, const struct serve_conf *sc)
{
	pid_t pid;
	int status = 0;

	fflush(NULL);
	if ((pid = fork()) < 0)
		return ca_error("fork: %s", strerror(errno));
	if (pid == 0) {
		int rc = serve_signer_key_prepare(dir, sc);

		if (rc)
			fprintf(stderr, "keyward-ca: serve: %s\n", ca_last_error());
		fflush(NULL);
		_exit(rc ? 1 : 0);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return ca_error("the OCSP signing key could not be found or made on the token (above: why)");
	return 0;
}

/*
 * Whether x is the CA's, for pub, has more than renew_percent of its life
 * left at now, and lives no longer than ocsp_signer_validity_minutes says
 * (so that a shorter setting takes effect at the next start).
 */
static bool signer_usable(struct server *sv, X509 *x, EVP_PKEY *pub, time_t now)
{
	struct tm a, b;
	time_t nb, na;

	if (!x || !pub || X509_verify(x, X509_get0_pubkey(ca_certificate(sv->ca))) != 1 ||
	    EVP_PKEY_eq(X509_get0_pubkey(x), pub) != 1 || !ASN1_TIME_to_tm(X509_get0_notBefore(x), &a) ||
	    !ASN1_TIME_to_tm(X509_get0_notAfter(x), &b)) {
		ERR_clear_error();
		return false;
	}
	nb = timegm(&a);
	na = timegm(&b);
	if (sv->sc.signer_validity && na - nb > (time_t)sv->sc.signer_validity + 60)
		return false;
	return na > now && (double)(na - now) * 100.0 > (double)sv->sc.renew_percent * (double)(na - nb);
}

/*
 * The delegated signer in place: its key "ocsp-FILE" on the CA's token
 * (made there if missing), its certificate ocsp-signer.crt in the CA
 * directory, issued again when missing, foreign or near its end.
 */
int serve_signer_delegated(struct server *sv)
{
	char label[CA_NAME_MAX + 8], path[CA_PATH_MAX + 32];
	EVP_PKEY *priv = NULL, *pub = NULL;
	STACK_OF(X509) *certs = NULL;
	X509 *x = NULL;
	unsigned char *der = NULL;
	int len, rc = -1;
	snprintf(label, sizeof label, "ocsp-%s", sv->file);
	ca_path(&sv->ca->conf, "ocsp-signer.crt", path, sizeof path);
	if (ca_token_key(sv->ca->token, label, &priv, &pub)) {
		if (sv->sc.read_only)
			ca_error(
				"read_only = true: the delegated OCSP signer's key \"%s\" is not on the token (%s), "
				"and a "
				"read-only responder makes none: start the issuing serve once, or set ocsp_signer = ca",
				label, ca_last_error());
		return -1;
	}
	if ((certs = ca_read_certs(path)) && sk_X509_num(certs) > 0 &&
	    signer_usable(sv, sk_X509_value(certs, 0), pub, time(NULL))) {
		x = X509_dup(sk_X509_value(certs, 0));
	} else if (sv->sc.read_only) {
		ca_error("read_only = true: %s is missing, not for the key \"%s\", or near its end, and a read-only "
			 "responder issues no certificate: copy ocsp-signer.crt from the serve that issues (it renews "
			 "it), or set ocsp_signer = ca in serve.conf",
			 path, label);
		goto out;
	} else {
		if (!(x = issue_signer(sv, priv, pub)))
			goto out;
		if ((len = i2d_X509(x, &der)) <= 0) {
			ca_error("cannot encode the OCSP signer's certificate");
			goto out;
		}
		{
			BIO *b = BIO_new(BIO_s_mem());
			BUF_MEM *m = NULL;

			if (!b || !PEM_write_bio_X509(b, x) || !BIO_get_mem_ptr(b, &m) ||
			    ca_write_atomic(path, m->data, m->length, 0644)) {
				BIO_free(b);
				ca_error("cannot write %s", path);
				goto out;
			}
			BIO_free(b);
		}
	}
	if (!x)
		goto out;
	pthread_rwlock_wrlock(&sv->signer_lock);
	if (sv->signer_owned) {
		X509_free(sv->signer.cert);
		EVP_PKEY_free(sv->signer.key);
		EVP_PKEY_free(sv->signer_pub);
		/* renewed: what the old certificate signed is signed again (it may end before those answers) */
		atomic_store(&sv->resign_before, (long long)time(NULL) + 1);
	}
	sv->signer = (struct ocsp_signer){.cert = x, .key = priv, .md = ca_md(&sv->ca->conf), .include_cert = true};
	sv->signer_pub = pub;
	sv->signer_owned = true;
	pthread_rwlock_unlock(&sv->signer_lock);
	x = NULL;
	priv = pub = NULL;
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(der);
	X509_free(x);
	EVP_PKEY_free(priv);
	EVP_PKEY_free(pub);
	sk_X509_pop_free(certs, X509_free);
	return rc;
}

bool serve_signer_due(struct server *sv)
{
	bool due;

	pthread_rwlock_rdlock(&sv->signer_lock);
	due = !signer_usable(sv, sv->signer.cert, sv->signer_pub, time(NULL));
	pthread_rwlock_unlock(&sv->signer_lock);
	return due;
}
