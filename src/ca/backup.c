/*
 * keyward-ca: backupdb and restoredb, the seed's "certutil -backupdb" and
 * "-restoredb" with the checks the manual procedure lacks.
 *
 * A backup is a directory: keyward-ca.db (SQLite's online backup, taken
 * while the CA runs), ca.crt, ca.conf.export (config export's text) and
 * manifest.json, which names the CA (its key's fingerprint), its counts
 * and last CRL numbers, and the size and SHA-256 of every file. It never
 * holds key material: the CA has none, its key is in the HSM.
 *
 * A restore replaces the database of a CA already set up on the same key
 * (setup --existing-key). Everything is checked before anything changes:
 * the manifest, every file's size and hash, the database's integrity, that
 * the backup is this CA's, and that no keyward-ca has the CA open (an
 * exclusive lock on .keyward-ca.lock, which every open holds shared). The
 * database replaced is kept beside it, renamed (on PostgreSQL, its rows are
 * replaced in one transaction under the writer lock, db_pgrestore.c, and
 * kept beside ca.conf as a backup file); the restore is audited in the
 * database restored; CRL numbers continue above every number either
 * side published (the backup's, this database's, publish/'s files).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/x509v3.h>

#include "ca/db_backend.h"

#define MANIFEST "manifest.json"
#define MANIFEST_MAX (64 * 1024)
#define FORMAT "keyward-ca-backup"
#define BACKUP_DB_MAX ((size_t)64 << 30) /* a file larger than this is not one backupdb wrote */

static const char *const backup_files[] = {"keyward-ca.db", "ca.crt", "ca.conf.export"};

/* The size and SHA-256 of path, streamed: a database may be large. */
static int file_digest(const char *path, char hex[65], long long *size)
{
	unsigned char buf[65536], md[32];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	FILE *f = fopen(path, "re");
	size_t n;
	int rc = -1;

	*size = 0;
	if (!f) {
		rc = ca_error("%s: %s", path, strerror(errno));
		goto out;
	}
	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		goto out;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		*size += (long long)n;
		if (!EVP_DigestUpdate(ctx, buf, n))
			goto out;
	}
	if (ferror(f) || !EVP_DigestFinal_ex(ctx, md, NULL)) {
		rc = ca_error("cannot read %s", path);
		goto out;
	}
	for (size_t i = 0; i < sizeof md; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out:
	if (f)
		fclose(f);
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* dir exists and is empty (made 0700 if missing). */
static int empty_dir(const char *dir)
{
	DIR *d;
	struct dirent *e;

	if (mkdir(dir, 0700) == 0)
		return 0;
	if (errno != EEXIST)
		return ca_error("cannot create %s: %s", dir, strerror(errno));
	if (!(d = opendir(dir)))
		return ca_error("%s: %s", dir, strerror(errno));
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			closedir(d);
			return ca_fail(CA_ERR_CONFLICT, "%s is not empty: a backup goes to a new directory", dir);
		}
	closedir(d);
	return 0;
}

static int write_chain(struct ca *ca, const char *path)
{
	struct ca_staged staged;

	if (ca_stage_pem_chain(&staged, path, ca->chain))
		return -1;
	return ca_stage_commit(&staged);
}

int ca_backup(struct ca *ca, const char *dir, struct ca_status *st)
{
	char path[CA_PATH_MAX + 64], hex[65], when[32];
	json_t *m = NULL, *files;
	char *text = NULL;
	time_t now = time(NULL);
	struct tm tm;
	int rc = -1;

	if (!ca->chain && ca_cert_load_chain(&ca->conf, &ca->chain))
		return -1;
	if (empty_dir(dir))
		return -1;
	snprintf(path, sizeof path, "%s/keyward-ca.db", dir);
	if (ca_db_backup(ca->db, path) || chmod(path, 0600) != 0)
		goto out;
	snprintf(path, sizeof path, "%s/ca.crt", dir);
	if (write_chain(ca, path) || chmod(path, 0600) != 0)
		goto out;
	snprintf(path, sizeof path, "%s/ca.conf.export", dir);
	if (!(text = ca_conf_export_text(&ca->conf)) || ca_write_atomic(path, text, strlen(text), 0600))
		goto out;
	/* the figures of the copy itself, not of the live database, which went on */
	{
		struct ca *copy = calloc(1, sizeof *copy);

		snprintf(path, sizeof path, "%s/keyward-ca.db", dir);
		if (!copy)
			goto out;
		copy->conf = ca->conf;
		if (ca_db_open_file(path, false, &copy->db) || ca_status(copy, st)) {
			ca_db_close(copy->db);
			free(copy);
			goto out;
		}
		ca_db_close(copy->db);
		free(copy);
		/* a journal file the open left is no part of the backup */
		snprintf(path, sizeof path, "%s/keyward-ca.db-journal", dir);
		unlink(path);
	}
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	m = json_pack("{s:s, s:i, s:s, s:s, s:s, s:i, s:s, s:I, s:I, s:I, s:I, s:I, s:b, s:s, s:{}}", "format", FORMAT,
		      "version", 1, "ca_name", st->name, "key_sha256", st->key_sha256, "cert_sha256", st->cert_sha256,
		      "schema_version", st->schema_version, "created", when, "issued", (json_int_t)st->issued,
		      "revoked", (json_int_t)st->revoked, "pending", (json_int_t)st->pending, "last_crl",
		      (json_int_t)st->last_crl, "last_delta_crl", (json_int_t)st->last_delta_crl, "retired",
		      st->retired, "server_name", ca->conf.server_name, "files");
	if (!m || !(files = json_object_get(m, "files"))) {
		ca_error("out of memory");
		goto out;
	}
	for (size_t i = 0; i < sizeof backup_files / sizeof backup_files[0]; i++) {
		long long size;

		snprintf(path, sizeof path, "%s/%s", dir, backup_files[i]);
		if (file_digest(path, hex, &size))
			goto out;
		json_object_set_new(files, backup_files[i],
				    json_pack("{s:s, s:I}", "sha256", hex, "size", (json_int_t)size));
	}
	free(text);
	if (!(text = json_dumps(m, JSON_INDENT(2)))) {
		ca_error("out of memory");
		goto out;
	}
	snprintf(path, sizeof path, "%s/" MANIFEST, dir);
	/* the manifest last: a directory without one is no backup */
	if (ca_write_atomic(path, text, strlen(text), 0600))
		goto out;
	if (ca_db_begin(ca->db) ||
	    ca_db_audit(ca->db, "backup", "database backed up to %s: %lld issued, %lld revoked, last CRL %lld", dir,
			st->issued, st->revoked, st->last_crl) ||
	    ca_db_commit(ca->db)) {
		ca_db_rollback(ca->db);
		goto out;
	}
	rc = 0;
out:
	json_decref(m);
	free(text);
	return rc;
}

/* ---- restore ---- */

/* The highest CRL number among dir's *.crl files (0 if none). */
static long long published_max(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	long long max = 0;

	while (d && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		char path[CA_PATH_MAX + 300];
		X509_CRL *crl = NULL;
		ASN1_INTEGER *num;
		FILE *f;

		if (n < 5 || strcmp(e->d_name + n - 4, ".crl"))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if ((f = fopen(path, "re"))) {
			crl = d2i_X509_CRL_fp(f, NULL);
			fclose(f);
		}
		if (crl && (num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL))) {
			int64_t v;

			if (ASN1_INTEGER_get_int64(&v, num) && v > max)
				max = v;
			ASN1_INTEGER_free(num);
		}
		X509_CRL_free(crl);
	}
	if (d)
		closedir(d);
	return max;
}

json_t *ca_manifest_parse(const char *name, const char *text, size_t len)
{
	json_error_t err;
	json_t *m, *files, *f;

	if (len > MANIFEST_MAX) {
		ca_error("%s: larger than %d bytes: not a backup manifest", name, MANIFEST_MAX);
		return NULL;
	}
	if (!(m = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err))) {
		ca_error("%s: not a backup manifest: line %d: %s", name, err.line, err.text);
		return NULL;
	}
	if (!json_is_string(json_object_get(m, "format")) ||
	    strcmp(json_string_value(json_object_get(m, "format")), FORMAT) ||
	    json_integer_value(json_object_get(m, "version")) != 1 || !json_is_string(json_object_get(m, "ca_name")) ||
	    !json_is_string(json_object_get(m, "key_sha256")) ||
	    strlen(json_string_value(json_object_get(m, "key_sha256"))) != 64 ||
	    !json_is_string(json_object_get(m, "created")) || !json_is_integer(json_object_get(m, "last_crl")) ||
	    json_integer_value(json_object_get(m, "last_crl")) < 0 ||
	    json_integer_value(json_object_get(m, "last_delta_crl")) < 0 ||
	    !json_is_object(files = json_object_get(m, "files"))) {
		ca_error("%s: not a keyward-ca backup manifest (format %s version 1)", name, FORMAT);
		goto bad;
	}
	for (size_t i = 0; i < sizeof backup_files / sizeof backup_files[0]; i++)
		if (!(f = json_object_get(files, backup_files[i])) || !json_is_string(json_object_get(f, "sha256")) ||
		    !json_is_integer(json_object_get(f, "size")) ||
		    json_integer_value(json_object_get(f, "size")) < 0) {
			ca_error("%s: the manifest does not list %s with its size and SHA-256", name, backup_files[i]);
			goto bad;
		}
	return m;
bad:
	json_decref(m);
	return NULL;
}

/* The manifest of backup dir, checked: format, and every file's size and hash. */
static json_t *read_manifest(const char *dir)
{
	char path[CA_PATH_MAX + 64], hex[65], *text;
	json_t *m = NULL, *files;
	size_t len;

	snprintf(path, sizeof path, "%s/" MANIFEST, dir);
	if (!(text = ca_read_file(path, MANIFEST_MAX, &len)))
		return NULL;
	m = ca_manifest_parse(path, text, len);
	free(text);
	if (!m)
		return NULL;
	files = json_object_get(m, "files");
	for (size_t i = 0; i < sizeof backup_files / sizeof backup_files[0]; i++) {
		json_t *f = json_object_get(files, backup_files[i]);
		long long size;

		snprintf(path, sizeof path, "%s/%s", dir, backup_files[i]);
		if (file_digest(path, hex, &size))
			goto bad;
		if (size != json_integer_value(json_object_get(f, "size"))) {
			ca_error("%s is %lld bytes, the manifest says %lld: truncated or damaged; nothing restored",
				 path, size, (long long)json_integer_value(json_object_get(f, "size")));
			goto bad;
		}
		if (strcmp(hex, json_string_value(json_object_get(f, "sha256")))) {
			ca_error("%s: its SHA-256 is not the manifest's: damaged; nothing restored", path);
			goto bad;
		}
	}
	return m;
bad:
	json_decref(m);
	return NULL;
}

/* An exclusive hold on the CA in dir: no keyward-ca has it open, and none can until it is let go. */
int ca_lock_exclusive(const char *dir)
{
	char path[CA_PATH_MAX + 32];
	int fd;

	snprintf(path, sizeof path, "%s/.keyward-ca.lock", dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
		return ca_error("cannot open %s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return ca_fail(CA_ERR_CONFLICT,
			       "the CA in %s is running (a keyward-ca process has it open: serve?): stop it first; "
			       "nothing changed",
			       dir);
	}
	return fd;
}

/* The copy about to replace the database: checked, and made this CA's restored database. */
static int prepare_copy(const struct ca_conf *c, const char *copy_path, json_t *m, bool force, long long floor,
			const char *backup)
{
	struct ca_db *db = NULL;
	EVP_PKEY *pub = NULL;
	char *have = NULL, *retired = NULL, want[65], floor_text[32];
	int rc = -1;

	if (ca_db_open_file(copy_path, false, &db) || ca_db_check(db))
		goto out;
	if (ca_db_get_meta(db, CA_META_KEY, &have) != 0 ||
	    strcmp(have, json_string_value(json_object_get(m, "key_sha256")))) {
		ca_error("%s: the database is not the CA the manifest names; nothing restored", backup);
		goto out;
	}
	if (!(pub = ca_cert_public_key(c)) || ca_key_fingerprint(pub, want))
		goto out;
	if (strcmp(have, want) && !force) {
		ca_fail(CA_ERR_CONFLICT,
			"%s is a backup of another CA (\"%s\", key SHA-256 %.16s...), not of the CA in %s (key "
			"SHA-256 %.16s...); nothing restored (--force restores it anyway)",
			backup, json_string_value(json_object_get(m, "ca_name")), have, c->dir, want);
		goto out;
	}
	snprintf(floor_text, sizeof floor_text, "%lld", floor);
	if (ca_db_begin(db))
		goto out;
	if (ca_db_get_meta(db, CA_META_RETIRED, &retired) == 0) {
		/* the old server retired itself: this one carries on, knowing it */
		if (ca_db_set_meta(db, "ca.predecessor_retired", retired) || ca_db_delete_meta(db, CA_META_RETIRED))
			goto rollback;
	}
	if ((strcmp(have, want) && ca_identity_record(c, db, pub, NULL)) ||
	    ca_db_set_meta(db, CA_META_CRL_FLOOR, floor_text) || ca_conf_record(c, db) ||
	    ca_db_audit(db, "restore",
			"database restored from %s (CA \"%s\", created %s on %s%s%s); CRL numbers continue above %lld",
			backup, json_string_value(json_object_get(m, "ca_name")),
			json_string_value(json_object_get(m, "created")),
			json_is_string(json_object_get(m, "server_name"))
				? json_string_value(json_object_get(m, "server_name"))
				: "?",
			retired ? "; that server is retired: " : "", retired ? retired : "", floor) ||
	    ca_db_commit(db))
		goto rollback;
	rc = 0;
	goto out;
rollback:
	ca_db_rollback(db);
out:
	ca_db_close(db);
	EVP_PKEY_free(pub);
	free(have);
	free(retired);
	return rc;
}

/* Copies from to to (0600), synced. */
static int copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = -1;
	ssize_t n;

	if (in < 0)
		return ca_error("%s: %s", from, strerror(errno));
	if ((out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600)) < 0) {
		ca_error("cannot create %s: %s", to, strerror(errno));
		goto out;
	}
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n) {
			ca_error("cannot write %s: %s", to, strerror(errno));
			goto out;
		}
	if (n < 0 || fsync(out) != 0) {
		ca_error("cannot copy %s: %s", from, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(in);
	if (out >= 0 && close(out) != 0 && !rc)
		rc = ca_error("cannot write %s: %s", to, strerror(errno));
	return rc;
}

/* The live database's highest CRL number and retired check (SQLite: the file; PostgreSQL: under the lock, later). */
static int live_checks(const struct ca_conf *c, bool force, long long *mine)
{
	char live[CA_PATH_MAX + 64], *retired = NULL;
	struct ca_db *db = NULL;
	int found, rc = -1;

	*mine = 0;
	if (!ca_db_is_sqlite(c))
		return 0; /* ca_db_pg_restore checks the database under its writer lock */
	ca_path(c, "keyward-ca.db", live, sizeof live);
	if (access(live, F_OK) != 0 && errno == ENOENT)
		return 0; /* database move onto SQLite: no file yet */
	if (ca_db_open_file(live, false, &db) || (*mine = ca_db_max_crl(db)) < 0)
		goto out;
	/* a retired CA stays retired: a restore must not bring back one that issues */
	found = ca_db_get_meta(db, CA_META_RETIRED, &retired);
	if (found == 0 && !force)
		ca_fail(CA_ERR_REFUSED,
			"the CA in %s is retired (%s): a restore would make it issue again; restore on the new server, "
			"or --force; nothing restored",
			c->dir, retired);
	if (found < 0 || (found == 0 && !force))
		goto out;
	rc = 0;
out:
	free(retired);
	ca_db_close(db);
	return rc;
}

/* Swaps the SQLite database for the prepared copy, the old one kept beside it as kept. */
static int swap_in(const char *dir, const char *live, const char *copy, const char *kept)
{
	for (int i = 0; i < 2; i++) {
		char side[CA_PATH_MAX + 80], kept_side[CA_PATH_MAX + 140];

		/* no process has it open (the lock): its WAL goes with it, so the kept copy stays whole */
		snprintf(side, sizeof side, "%s-%s", live, i ? "shm" : "wal");
		snprintf(kept_side, sizeof kept_side, "%s-%s", kept, i ? "shm" : "wal");
		if (rename(side, kept_side) != 0 && errno != ENOENT)
			return ca_error("cannot move %s aside: %s; nothing restored", side, strerror(errno));
	}
	if ((rename(live, kept) != 0 && errno != ENOENT) || rename(copy, live) != 0)
		return ca_error("cannot put the restored database in place: %s (the old one is %s)", strerror(errno),
				kept);
	{
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	return 0;
}

int ca_restore_locked(const struct ca_conf *c, const char *backup, bool force, struct ca_restored *out)
{
	char live[CA_PATH_MAX + 64], copy[CA_PATH_MAX + 64], kept[CA_PATH_MAX + 128], path[CA_PATH_MAX + 64], when[32];
	json_t *m = NULL;
	long long floor, mine;
	time_t now = time(NULL);
	struct tm tm;
	int rc = -1;

	copy[0] = '\0';
	memset(out, 0, sizeof *out);
	if (!(m = read_manifest(backup)) || live_checks(c, force, &mine))
		goto out;
	/* above anything either side published */
	floor = json_integer_value(json_object_get(m, "last_crl"));
	if (json_integer_value(json_object_get(m, "last_delta_crl")) > floor)
		floor = json_integer_value(json_object_get(m, "last_delta_crl"));
	if (mine > floor)
		floor = mine;
	ca_path(c, "publish", path, sizeof path);
	if (published_max(path) > floor)
		floor = published_max(path);

	snprintf(copy, sizeof copy, "%s/keyward-ca.db.restoring", c->dir);
	snprintf(path, sizeof path, "%s/keyward-ca.db", backup);
	if (copy_file(path, copy) || prepare_copy(c, copy, m, force, floor, backup))
		goto out;
	/* checked, all of it: now the change, the old database kept */
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm);
	ca_path(c, "keyward-ca.db", live, sizeof live);
	snprintf(kept, sizeof kept, "%s.replaced-%s", live, when);
	if (ca_db_is_sqlite(c)) {
		if (swap_in(c->dir, live, copy, kept))
			goto out;
		copy[0] = '\0';
	} else if (ca_db_pg_restore(c->database, copy, force, kept, &floor)) {
		goto out;
	}
	out->next_crl = floor + 1;
	out->backup_retired = json_is_true(json_object_get(m, "retired"));
	rc = 0;
out:
	if (copy[0])
		unlink(copy);
	json_decref(m);
	return rc;
}

int ca_restore(const char *dir, const char *backup, bool force, struct ca_restored *out)
{
	struct ca_conf *c = malloc(sizeof *c);
	int lock = -1, rc = -1;

	memset(out, 0, sizeof *out);
	if (!c)
		return ca_error("out of memory");
	if (ca_conf_load(c, dir))
		goto out;
	if (ca_db_is_sqlite(c)) {
		char live[CA_PATH_MAX + 64];
		struct ca_db *db = NULL;

		/* a CA set up here: its database there to replace (only database move makes a new one) */
		ca_path(c, "keyward-ca.db", live, sizeof live);
		if (ca_db_open_file(live, false, &db))
			goto out;
		ca_db_close(db);
	}
	if ((lock = ca_lock_exclusive(dir)) >= 0)
		rc = ca_restore_locked(c, backup, force, out);
out:
	if (lock >= 0)
		close(lock);
	free(c);
	return rc;
}
