/*
 * Fuzz target: the OCSP responder's request decoder and answer (ocsp.c),
 * buffer to buffer, as keyward-ca serve calls them: the input as a DER
 * request (the POST form) and as base64 text (the GET form), answered for
 * a CA made here (a throwaway software key, not a secret) whose serials
 * 1234 and 5678 are good and revoked. Every answer must encode.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "ca/ocsp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* the corpus's requests name this CA (tests/fuzz/corpus/ocsp) */
static const char ca_pem[] = "-----BEGIN CERTIFICATE-----\n"
			     "MIIBejCCASGgAwIBAgIUNE4nGtCh6Fw/0pMgSmwofvWeJkEwCgYIKoZIzj0EAwIw\n"
			     "EjEQMA4GA1UEAwwHRnV6eiBDQTAgFw0yNjEyMDQxNDU4NDVaGA8yMTI2MTExMDE0\n"
			     "NTg0NVowEjEQMA4GA1UEAwwHRnV6eiBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH\n"
			     "A0IABB/5S7DlrdQcSnTaZr/5L/dN7eYxzOCF0nfiAcJ1XncHS9HYtcQQtjzFn6EL\n"
			     "f8qTBAHK5XWsbanRDdJgkmUSz6ijUzBRMB0GA1UdDgQWBBSEJmL+6KTRVMkZi1fC\n"
			     "rP2ZccZT9DAfBgNVHSMEGDAWgBSEJmL+6KTRVMkZi1fCrP2ZccZT9DAPBgNVHRMB\n"
			     "Af8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIFrxD2JCp2DvNvnb1HSY96DySVwP\n"
			     "DtEYNVCj72u5QonQAiAK+oIv/8fLpgsqmrW2NSUFs90RS6t6Yx51jGBxVz5jlg==\n"
			     "-----END CERTIFICATE-----\n";
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
			      "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgq1xoXRHJ9Sdbpa6f\n"
			      "u73QbB8Ak+S4Xloud0bLdmtTFOehRANCAAQf+Uuw5a3UHEp02ma/+S/3Te3mMczg\n"
			      "hdJ34gHCdV53B0vR2LXEELY8xZ+hC3/KkwQByuV1rG2p0Q3SYJJlEs+o\n"
			      "-----END PRIVATE KEY-----\n";

static struct ocsp_issuer issuer;
static struct ocsp_signer signer;

static int lookup(void *arg, const char *serial, struct ocsp_status *st)
{
	(void)arg;
	st->status = V_OCSP_CERTSTATUS_UNKNOWN;
	st->reason = -1;
	st->revoked_at = 0;
	st->invalid_at = 0;
	if (!strcmp(serial, "1234")) {
		st->status = V_OCSP_CERTSTATUS_GOOD;
	} else if (!strcmp(serial, "5678")) {
		st->status = V_OCSP_CERTSTATUS_REVOKED;
		st->revoked_at = 1700000000;
		st->reason = 1;
		st->invalid_at = 1600000000;
	} else if (!strcmp(serial, "9ABC")) {
		return -1; /* the database failing */
	}
	return 0;
}

static void init(void)
{
	BIO *b;

	if (signer.key)
		return;
	b = BIO_new_mem_buf(ca_pem, -1);
	signer.cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
	BIO_free(b);
	b = BIO_new_mem_buf(key_pem, -1);
	signer.key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	signer.md = EVP_sha256();
	signer.include_cert = true;
	if (!signer.cert || !signer.key || ocsp_issuer_init(&issuer, signer.cert))
		abort();
}

static void answer(OCSP_REQUEST *req)
{
	struct ocsp_result res;
	unsigned char *out = NULL;
	size_t len = 0;
	char serial[OCSP_SERIAL_HEX_MAX];

	ocsp_request_cache_key(&issuer, req, serial, sizeof serial);
	if (ocsp_answer(&issuer, &signer, req, lookup, NULL, 1700000000, 3600, &out, &len, &res) || !out || !len ||
	    res.outcome >= OCSP_OUT_N)
		abort();
	{
		const unsigned char *p = out;
		OCSP_RESPONSE *resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);

		if (!resp || p != out + len)
			abort(); /* every answer is a well-formed OCSPResponse */
		OCSP_RESPONSE_free(resp);
	}
	OPENSSL_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *der = malloc(OCSP_REQUEST_MAX);
	OCSP_REQUEST *req;
	long n;

	init();
	req = ocsp_request_decode(data, size);
	answer(req);
	OCSP_REQUEST_free(req);
	if (der && (n = ocsp_base64_decode((const char *)data, size, der, OCSP_REQUEST_MAX)) > 0) {
		req = ocsp_request_decode(der, (size_t)n);
		answer(req);
		OCSP_REQUEST_free(req);
	}
	free(der);
	ERR_clear_error();
	return 0;
}
