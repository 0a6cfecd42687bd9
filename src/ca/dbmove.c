/*
 * keyward-ca: database move, a CA's records moved between SQLite
 * (keyward-ca.db) and PostgreSQL (ca.conf's database =), checked at each
 * step, with the CA stopped on this host (the restore's exclusive lock):
 *
 *   backup   backupdb into DIR/database-move-WHEN (kept: the way back)
 *   restore  restoredb of it into the target (db_pgrestore.c on PostgreSQL,
 *            a new keyward-ca.db on SQLite, any old one kept aside)
 *   verify   the target's counts and its newest CRL numbers are the
 *            backup's, and the source did not change meanwhile (another
 *            host sharing a PostgreSQL database): otherwise nothing switches
 *   switch   ca.conf's database = rewritten, audited in the target; the
 *            source audits where its records went, and a SQLite source
 *            is renamed keyward-ca.db.moved-WHEN so nothing opens it again
 *
 * The move carries what backupdb does: the CA's tables and ACME's and
 * CMP's durable records (accounts, EAB keys, orders and authorizations, CMP
 * secrets, sealed as they are stored). Nonces and CMP's replay record are
 * short-lived and stay behind.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/ca.h"

static void say(const struct ca_db_move *m, const char *fmt, ...)
{
	char line[900];
	va_list ap;

	if (!m->say)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	m->say(m->arg, line);
}

static int count_one(void *arg, const void *row)
{
	(void)row;
	++*(long long *)arg;
	return 0;
}

static int count_cert(void *arg, const struct ca_db_cert *c)
{
	return count_one(arg, c);
}

static int count_audit(void *arg, const struct ca_audit_row *r)
{
	return count_one(arg, r);
}

/* What the move compares: counts, CRL numbers, rows. */
struct figures {
	struct ca_status st;
	long long certs, audit;
};

static int figures_of(struct ca_db *db, time_t now, struct figures *f)
{
	memset(f, 0, sizeof *f);
	return ca_db_counts(db, now, &f->st) || ca_db_each_cert(db, count_cert, &f->certs) ||
			       ca_db_each_audit(db, count_audit, &f->audit)
		       ? -1
		       : 0;
}

static bool same_counts(const struct figures *a, const struct figures *b)
{
	return a->certs == b->certs && a->st.issued == b->st.issued && a->st.revoked == b->st.revoked &&
	       a->st.expired == b->st.expired && a->st.pending == b->st.pending && a->st.last_crl == b->st.last_crl &&
	       a->st.last_delta_crl == b->st.last_delta_crl;
}

/* The source's records, renamed (SQLite) so nothing opens them as the CA's again. */
static int retire_sqlite(const struct ca_conf *c, const char *when)
{
	char live[CA_PATH_MAX + 64], to[CA_PATH_MAX + 128];

	ca_path(c, "keyward-ca.db", live, sizeof live);
	snprintf(to, sizeof to, "%s.moved-%s", live, when);
	if (rename(live, to) != 0)
		return ca_error("cannot rename %s to %s: %s", live, to, strerror(errno));
	for (int i = 0; i < 2; i++) {
		char side[CA_PATH_MAX + 80];

		snprintf(side, sizeof side, "%s-%s", live, i ? "shm" : "wal");
		unlink(side); /* closed: everything is in the main file */
	}
	return 0;
}

/* A backup directory this move made, removed: the files backupdb writes, then the directory. */
static void drop_backup(const char *dir)
{
	static const char *const files[] = {"manifest.json", "keyward-ca.db", "keyward-ca.db-journal", "ca.crt",
					    "ca.conf.export"};
	char path[CA_PATH_MAX + 96];

	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

int ca_db_move(const struct ca_db_move *m)
{
	struct ca_conf *next = malloc(sizeof *next);
	struct ca *src = calloc(1, sizeof *src);
	struct ca_db *dst = NULL;
	struct figures before, copied, after, now_src;
	struct ca_restored restored;
	char bdir[CA_PATH_MAX + 64] = "", when[32], path[CA_PATH_MAX + 64];
	const char *target = strcmp(m->target, "sqlite") ? m->target : "";
	time_t now = time(NULL);
	struct tm tm;
	long long next_crl = 0;
	bool restored_file = false, switching = false;
	int lock = -1, rc = -1;

	if (!next || !src) {
		free(next);
		free(src);
		return ca_error("out of memory");
	}
	src->lock = -1;
	if (ca_conf_load(&src->conf, m->dir))
		goto out;
	if (*target && ca_db_url_check(target)) {
		ca_usage_error("database move %s: %s", "postgresql://...", ca_last_error());
		goto out;
	}
	if (!strcmp(target, src->conf.database)) {
		ca_usage_error("the CA's database is %s already; nothing moved",
			       *target ? "there" : "SQLite (keyward-ca.db)");
		goto out;
	}
	*next = src->conf;
	snprintf(next->database, sizeof next->database, "%s", target);
	/* the CA stopped on this host, and kept stopped until the move is done */
	if ((lock = ca_lock_exclusive(m->dir)) < 0 || ca_db_open(&src->conf, false, &src->db))
		goto out;
	if (figures_of(src->db, now, &before))
		goto out;
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y%m%dT%H%M%SZ", &tm);
	/* a new directory: another move this second left one, a failed move none (drop_backup) */
	snprintf(bdir, sizeof bdir, "%s/database-move-%s", m->dir, when);
	for (int i = 2; access(bdir, F_OK) == 0 && i < 100; i++)
		snprintf(bdir, sizeof bdir, "%s/database-move-%s-%d", m->dir, when, i);
	if (ca_backup(src, bdir, &copied.st)) {
		drop_backup(bdir);
		bdir[0] = '\0';
		goto out;
	}
	say(m, "backed up: %s (%lld issued, %lld revoked, last CRL %lld)", bdir, copied.st.issued, copied.st.revoked,
	    copied.st.last_crl);
	if (ca_restore_locked(next, bdir, false, &restored))
		goto out;
	restored_file = !*target; /* a new keyward-ca.db: not to be left beside a ca.conf that names another */
	say(m, "restored into %s", *target ? target : "keyward-ca.db");
	/* verify: the target holds what the backup does, and the source did not change meanwhile */
	if (ca_db_open(next, false, &dst) || figures_of(dst, now, &after) || ca_db_next_crl_number(dst, &next_crl) ||
	    figures_of(src->db, now, &now_src))
		goto out;
	if (!same_counts(&before, &after) || after.st.last_crl != copied.st.last_crl) {
		ca_error("the target does not hold what the source does (certificates %lld/%lld, issued %lld/%lld, "
			 "revoked %lld/%lld, pending %lld/%lld, last CRL %lld/%lld, last delta %lld/%lld); ca.conf not "
			 "switched, the CA stays on its database",
			 after.certs, before.certs, after.st.issued, before.st.issued, after.st.revoked,
			 before.st.revoked, after.st.pending, before.st.pending, after.st.last_crl, before.st.last_crl,
			 after.st.last_delta_crl, before.st.last_delta_crl);
		goto out;
	}
	/* the backup added its own audit record; anything more was written by another process meanwhile */
	if (!same_counts(&before, &now_src) || now_src.audit != before.audit + 1) {
		ca_error("the source database changed during the move (another host sharing it?); ca.conf not "
			 "switched: stop every process using it and run database move again");
		goto out;
	}
	if (next_crl <= before.st.last_crl || next_crl <= before.st.last_delta_crl) {
		ca_error("the target's next CRL number %lld is not above %lld; ca.conf not switched", next_crl,
			 before.st.last_crl);
		goto out;
	}
	say(m,
	    "verified: %lld certificates (%lld issued, %lld revoked, %lld expired), %lld pending; last CRL %lld, "
	    "last delta %lld; the next CRL number is %lld",
	    after.certs, after.st.issued, after.st.revoked, after.st.expired, after.st.pending, after.st.last_crl,
	    after.st.last_delta_crl, next_crl);
	/* from here ca.conf may name the target (even if its record fails): the target and backup stay */
	restored_file = false;
	switching = true;
	if (ca_conf_change(next, dst, "database moved from %s to %s (backup %s): %lld certificates, last CRL %lld",
			   src->conf.database[0] ? src->conf.database : "keyward-ca.db",
			   *target ? target : "keyward-ca.db", bdir, after.certs, after.st.last_crl))
		goto out;
	say(m, "ca.conf: database = %s", *target ? target : "(none: keyward-ca.db)");
	/* the source says where its records went; a SQLite file goes out of the way */
	if (ca_db_begin(src->db) ||
	    ca_db_audit(src->db, "config", "database moved to %s: this database is no longer the CA's",
			*target ? target : "keyward-ca.db") ||
	    ca_db_commit(src->db)) {
		ca_db_rollback(src->db);
		say(m, "warning: the old database did not record the move: %s", ca_last_error());
	}
	if (ca_db_is_sqlite(&src->conf)) {
		ca_db_close(src->db);
		src->db = NULL;
		if (retire_sqlite(&src->conf, when))
			say(m, "warning: %s", ca_last_error());
		else
			say(m, "the old database is keyward-ca.db.moved-%s", when);
	} else {
		say(m, "the old database %s still holds the records: drop it once no host's ca.conf names it",
		    src->conf.database);
	}
	rc = 0;
out:
	ca_db_close(dst);
	if (rc && restored_file) {
		ca_path(next, "keyward-ca.db", path, sizeof path);
		unlink(path);
	}
	if (rc && bdir[0] && !switching)
		drop_backup(bdir); /* nothing switched: the CA stays where it was, nothing to go back to */
	ca_close(src);
	if (lock >= 0)
		close(lock);
	free(next);
	return rc;
}
