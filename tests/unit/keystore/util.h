/*
 * Shared fixtures of the keystore unit tests: a fresh store in a temporary
 * directory, or a fresh database on the PostgreSQL server KW_TEST_PG_URL
 * names (the _pg registrations, run by tests/pg/with-pg).
 */
#ifndef KW_TEST_KEYSTORE_UTIL_H
#define KW_TEST_KEYSTORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include "keystore/keystore.h"

#define PASS "correct horse battery staple"

struct fx {
	char dir[64];
	char path[200]; /* the store's URL: a file, or postgresql://.../kwt_PID_N */
	struct kw_keystore *ks;
	uint64_t pid; /* partition "dev" */
};

/* mkdtemp + open + init_passphrase(PASS) + partition "dev" */
int fx_setup(void **state);
/* as fx_setup, without init or partition */
int fx_setup_bare(void **state);
int fx_teardown(void **state);
void fx_reopen(struct fx *f);
/* whether the stores are PostgreSQL databases (KW_TEST_PG_URL) */
bool fx_pg(void);
/* a copy of f's closed store (a file, or a database made from it as a template) named by suffix */
void fx_clone(struct fx *f, const char *suffix, char *out, size_t cap);
void fx_clone_remove(const char *path);

/* "RSA" (2048), "P-256", "P-384", "Ed25519" */
EVP_PKEY *gen_key(const char *what);
/* put_keypair with usages SIGN; fails the test on error */
void put_pair(struct fx *f, uint64_t pid, const char *owner, const char *name, const char *type, bool extractable,
	      bool modifiable, struct kw_object_row *priv, struct kw_object_row *pub);
/* Runs SQL on the store file through a separate connection, as a hand edit would. */
void raw_sql(struct fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* one integer from raw SQL */
int64_t raw_int(struct fx *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* number of objects in the partition */
size_t count_objects(struct fx *f, uint64_t pid);

#endif
