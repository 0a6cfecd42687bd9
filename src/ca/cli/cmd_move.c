/*
 * keyward-ca backupdb, restoredb, retire and migrate: moving the CA to
 * another server (docs/migration.md); database move: its records to
 * another database (docs/ca.md).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ca/cli/cli.h"

int cmd_backupdb(const struct opts *o, const char *dir)
{
	struct ca_status st;
	struct ca *ca = NULL;
	int rc = cli_open(o, CA_OPEN_CERT, &ca);

	if (!rc)
		rc = ca_backup(ca, dir, &st);
	if (!rc)
		printf("backed up CA \"%s\" to %s: %lld issued, %lld revoked, %lld pending; last CRL %lld%s\n", st.name,
		       dir, st.issued, st.revoked, st.pending, st.last_crl, st.retired ? "; the CA is retired" : "");
	ca_close(ca);
	return rc;
}

int cmd_restoredb(const struct opts *o, const char *dir)
{
	struct ca_restored r;

	if (ca_restore(o->dir, dir, o->force, &r))
		return -1;
	printf("restored %s into %s: the next CRL number is %lld\n", dir, o->dir, r.next_crl);
	if (!r.backup_retired)
		fprintf(stderr, "keyward-ca: warning: the backup's CA was not retired; if this is a move, run "
				"keyward-ca retire on the old server now, so that only one server issues\n");
	return 0;
}

int cmd_retire(const struct opts *o)
{
	struct ca *ca = NULL;
	long long crl = 0;
	int rc = -1;

	if (!o->yes && !isatty(STDIN_FILENO))
		return ca_fail(CA_ERR_USAGE, "retire stops this CA for good: confirm with --yes");
	if (!o->yes) {
		char answer[16] = "";

		fprintf(stderr, "retire stops the CA in %s from issuing and publishing, for good. Type yes: ", o->dir);
		if (!fgets(answer, sizeof answer, stdin) || strcmp(answer, "yes\n"))
			return ca_fail(CA_ERR_USAGE, "not confirmed; nothing changed");
	}
	if (cli_open(o, CA_OPEN_CERT | CA_OPEN_KEY, &ca) || ca_retire(ca, &crl))
		goto out;
	printf("retired: final CRL number %lld published; this CA issues and publishes no more\n", crl);
	rc = 0;
out:
	ca_close(ca);
	return rc;
}

static void print_line(void *arg, const char *line)
{
	(void)arg;
	printf("%s\n", line);
	fflush(stdout);
}

int cmd_migrate(const struct opts *o)
{
	struct ca_migrate m = {
		.dir = o->dir,
		.from = o->from,
		.config = o->config,
		.server_name = o->server_name,
		.module = o->module,
		.token = o->token,
		.pin_file = o->pin_file,
		.dry_run = o->dry_run,
		.force = o->force,
		.say = print_line,
	};

	if (!o->from)
		return ca_fail(CA_ERR_USAGE, "migrate needs --from BACKUPDIR (the old server's backupdb)");
	return ca_migrate(&m);
}

int cmd_database(const struct opts *o, int argc, char **argv)
{
	struct ca_db_move m = {.dir = o->dir, .say = print_line};

	if (argc != 2 || strcmp(argv[0], "move"))
		return ca_fail(CA_ERR_USAGE, "database move postgresql://[USER@]HOST[:PORT]/DB | database move sqlite");
	m.target = argv[1];
	if (ca_db_move(&m))
		return -1;
	printf("moved: the CA's database is %s\n", strcmp(argv[1], "sqlite") ? argv[1] : "keyward-ca.db (SQLite)");
	return 0;
}
