/*
 * Fuzz target: every request message through keywardd's handlers, as the
 * server runs them: the body decoded from the wire, handed to
 * kw_handle_request (or kw_handle_admin), the response packed into a frame
 * and the request's scratch freed. The first input byte picks the peer:
 * a stranger without a certificate, a stranger with one, the development
 * partition's authenticated client, or the admin socket. The store is the
 * real one (a development SQLite store in a temporary directory, made by
 * kw_server_setup as keywardd makes it), shared by every input; when an
 * input locks the HSM the next one finds it unlocked again. It starts with
 * three key pairs under S-1-5-21-1-2-3, "k" (P-256), "r" (RSA-2048) and
 * "e" (Ed25519), for the key operations' seeds to name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/buf.h"
#include "common/error.h"
#include "common/frame.h"
#include "common/log.h"
#include "daemon/daemon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct kw_server srv;
static struct kw_peer client, stranger_with_cert, stranger, admin;
static char dir[] = "/tmp/fuzz_handlers.XXXXXX";

static void remove_dir(void)
{
	char cmd[128];

	kw_transfer_free(admin.transfer); /* an unfinished transfer's buffer is no leak */
	admin.transfer = NULL;
	kw_server_teardown(&srv);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz_handlers: could not remove %s\n", dir);
}

static void run(struct kw_peer *peer, const Keyward__Request *req, Keyward__Response *resp, struct kw_buf *out)
{
	struct kw_scratch scratch = {0};

	kw_error_clear();
	kw_keystore_set_actor(peer->partition, peer->actor);
	if (peer->admin)
		kw_handle_admin(&srv, peer, req, resp, &scratch);
	else
		kw_handle_request(&srv, peer, req, resp, &scratch);
	resp->id = req->id;
	kw_frame_put_response(out, resp);
	kw_scratch_free(&scratch);
}

/* The development client's peer: its certificate's fingerprint, authenticated by a real Hello. */
static void make_peers(void)
{
	char path[128];
	FILE *f;
	X509 *cert;
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__Hello h = KEYWARD__HELLO__INIT;
	Keyward__Response resp = KEYWARD__RESPONSE__INIT;
	struct kw_buf out;

	snprintf(path, sizeof path, "%s/client/dev.crt", dir);
	if (!(f = fopen(path, "r")) || !(cert = PEM_read_X509(f, NULL, NULL, NULL)))
		abort();
	fclose(f);
	snprintf(stranger.address, sizeof stranger.address, "192.0.2.1:4000");
	snprintf(stranger.actor, sizeof stranger.actor, "unauthenticated 192.0.2.1:4000");
	stranger_with_cert = stranger;
	stranger_with_cert.has_cert = true;
	kw_tls_fingerprint(cert, stranger_with_cert.fingerprint);
	X509_NAME_oneline(X509_get_subject_name(cert), stranger_with_cert.actor, sizeof stranger_with_cert.actor);
	X509_free(cert);
	client = stranger_with_cert;
	h.min_version = h.max_version = 1;
	h.partition = "dev";
	req.body_case = KEYWARD__REQUEST__BODY_HELLO;
	req.hello = &h;
	kw_buf_init(&out, KW_MAX_FRAME + KW_FRAME_HEADER);
	run(&client, &req, &resp, &out);
	kw_buf_cleanup(&out);
	if (!client.authenticated) {
		fprintf(stderr, "fuzz_handlers: the development client did not authenticate\n");
		abort();
	}
	admin.admin = true;
	snprintf(admin.address, sizeof admin.address, "admin socket");
	snprintf(admin.actor, sizeof admin.actor, "admin");
	admin.transfer = kw_transfer_new(&srv); /* backup and restore, as an admin connection has */
}

/* A key pair of the development client, so that key operations (Sign, SignBatch) reach the crypto. */
static void make_key(const char *name, Keyward__KeyType type, unsigned bits, const char *curve)
{
	Keyward__Request req = KEYWARD__REQUEST__INIT;
	Keyward__GenerateKey g = KEYWARD__GENERATE_KEY__INIT;
	Keyward__Response resp = KEYWARD__RESPONSE__INIT;
	struct kw_buf out;

	g.owner = "S-1-5-21-1-2-3";
	g.name = (char *)name;
	g.key_type = type;
	g.bits = bits;
	g.curve = (char *)curve;
	req.body_case = KEYWARD__REQUEST__BODY_GENERATE_KEY;
	req.generate_key = &g;
	kw_buf_init(&out, KW_MAX_FRAME + KW_FRAME_HEADER);
	run(&client, &req, &resp, &out);
	kw_buf_cleanup(&out);
	if (resp.status != KEYWARD__STATUS__OK && resp.status != KEYWARD__STATUS__EXISTS) {
		fprintf(stderr, "fuzz_handlers: cannot make key %s: %s\n", name, kw_last_error());
		abort();
	}
}

static void start(void)
{
	if (srv.loops)
		kw_server_teardown(&srv);
	kw_session_objects_free(client.session_objects);
	client.session_objects = NULL;
	kw_transfer_free(admin.transfer);
	admin.transfer = NULL;
	memset(&srv, 0, sizeof srv);
	kw_server_config_defaults(&srv.cfg);
	snprintf(srv.cfg.dev_dir, sizeof srv.cfg.dev_dir, "%s", dir);
	snprintf(srv.cfg.listen, sizeof srv.cfg.listen, "127.0.0.1:0");
	srv.cfg.workers = 1;
	srv.cfg.slow_workers = 1;
	if (kw_dev_config(&srv.cfg, NULL) || kw_server_setup(&srv)) {
		fprintf(stderr, "fuzz_handlers: cannot start the server: %s\n", kw_last_error());
		abort();
	}
	make_peers();
	make_key("k", KEYWARD__KEY_TYPE__EC, 0, "P-256");
	make_key("r", KEYWARD__KEY_TYPE__RSA, 2048, "");
	make_key("e", KEYWARD__KEY_TYPE__ED25519, 0, "");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool started;
	struct kw_peer *peers[] = {&stranger, &stranger_with_cert, &client, &admin};
	struct kw_peer peer;
	Keyward__Request *req = NULL;
	Keyward__Response resp = KEYWARD__RESPONSE__INIT;
	struct kw_buf out;

	if (!started) {
		kw_log_init("error");
		if (!mkdtemp(dir))
			abort();
		kw_server_block_signals();
		start();
		atexit(remove_dir);
		started = true;
	}
	if (size < 1 || size - 1 > KW_MAX_FRAME)
		return 0;
	if (kw_frame_decode_request(data + 1, size - 1, &req) != KW_OK)
		return 0;
	peer = *peers[data[0] % 4]; /* a Hello may change it: each input starts from the same peer */
	kw_buf_init(&out, KW_MAX_FRAME + KW_FRAME_HEADER);
	run(&peer, req, &resp, &out);
	kw_buf_cleanup(&out);
	/* a Hello made this copy a session object table: freed here, as server.c frees a connection's */
	if (peer.session_objects != peers[data[0] % 4]->session_objects)
		kw_session_objects_free(peer.session_objects);
	keyward__request__free_unpacked(req, NULL);
	if (kw_keystore_locked(srv.ks)) /* AdminLock: a fresh development store for the next input */
		start();
	return 0;
}
