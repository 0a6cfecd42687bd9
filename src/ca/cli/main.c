/*
 * keyward-ca: the command line (docs/keyward-ca.8): options and dispatch
 * to the cmd_* front ends (cli.h). Exit codes: 0 success, 1 error (nothing
 * changed), 2 usage.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/cli/cli.h"

/* A whole number from 1 to max; -1 (after saying so) otherwise. */
static int number_option(const char *name, const char *text, unsigned max, unsigned *out)
{
	char *end;
	long v = strtol(text, &end, 10);

	if (*end || v < 1 || v > (long)max) {
		fprintf(stderr, "keyward-ca: %s: a whole number from 1 to %u, not \"%s\"\n", name, max, text);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keyward-ca [--dir DIR] COMMAND ...\n"
		"  setup --name NAME [--key-type T | --existing-key NAME|URI [--cert F]] [--hash H] [--validity DAYS]\n"
		"        [--server-name HOST] [--url-base URL] [--subordinate] [--module PATH] [--token LABEL] "
		"[--pin-file F]\n"
		"        [--database postgresql://[USER@]HOST[:PORT]/DB]\n"
		"  install-cert FILE | keys [--cert F] [--json] | templates list|show N|add N --file F|remove N\n"
		"  submit CSR... --template T [--out F | --out-dir D] [--threads N] [--json] [--quiet] | approve ID | "
		"deny ID\n"
		"  revoke SERIAL --reason R [--date YYYY-MM-DDTHH:MM:SSZ] | unrevoke SERIAL\n"
		"  list [--status S] [--json] | view SERIAL | ca.cert FILE [--der] | ca.chain FILE | crl [--delta]\n"
		"  config [show] | config set KEY VALUE | config export FILE | config import FILE [--set "
		"KEY=VALUE]...\n"
		"  audit [--json] | status [--json] | serve [--listen HOST:PORT]\n"
		"  acme-eab TEMPLATE [--json] | cmp-secret TEMPLATE [--remove] [--quiet]\n"
		"  backupdb DIR | restoredb DIR [--force] | retire [--yes]\n"
		"  database move postgresql://[USER@]HOST[:PORT]/DB | database move sqlite\n"
		"  migrate --from BACKUPDIR [--config EXPORT] [--server-name HOST] [--dry-run]\n"
		"See keyward-ca(8).\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"name", required_argument, NULL, 'n'},
		{"key-type", required_argument, NULL, 'k'},
		{"existing-key", required_argument, NULL, 'e'},
		{"cert", required_argument, NULL, 'c'},
		{"hash", required_argument, NULL, 'h'},
		{"validity", required_argument, NULL, 'v'},
		{"server-name", required_argument, NULL, 's'},
		{"url-base", required_argument, NULL, 'U'},
		{"subordinate", no_argument, NULL, 'S'},
		{"module", required_argument, NULL, 'm'},
		{"token", required_argument, NULL, 't'},
		{"pin-file", required_argument, NULL, 'p'},
		{"template", required_argument, NULL, 'T'},
		{"out", required_argument, NULL, 'o'},
		{"reason", required_argument, NULL, 'r'},
		{"date", required_argument, NULL, 'D'},
		{"status", required_argument, NULL, 'u'},
		{"file", required_argument, NULL, 'f'},
		{"delta", no_argument, NULL, 'x'},
		{"json", no_argument, NULL, 'j'},
		{"der", no_argument, NULL, 'E'},
		{"out-dir", required_argument, NULL, 'O'},
		{"threads", required_argument, NULL, 'N'},
		{"force", no_argument, NULL, 'F'},
		{"yes", no_argument, NULL, 'Y'},
		{"set", required_argument, NULL, 'A'},
		{"from", required_argument, NULL, 'R'},
		{"config", required_argument, NULL, 'C'},
		{"dry-run", no_argument, NULL, 'Z'},
		{"remove", no_argument, NULL, 'X'},
		{"quiet", no_argument, NULL, 'q'},
		{"listen", required_argument, NULL, 'L'},
		{"database", required_argument, NULL, 'B'},
		{"help", no_argument, NULL, 'H'},
		{"version", no_argument, NULL, 'W'},
		{NULL, 0, NULL, 0},
	};
	struct opts o = {.dir = getenv("KEYWARD_CA_DIR")};
	const char *cmd;
	char **args;
	int nargs, ch, rc;

	/* a peer that went away is an error to report, not a signal that kills us */
	signal(SIGPIPE, SIG_IGN);

	if (!o.dir)
		o.dir = "/var/lib/keyward-ca";
	/* GNU getopt permutes: options may come before or after the command and its arguments */
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			o.dir = optarg;
			break;
		case 'n':
			o.name = optarg;
			break;
		case 'k':
			o.key_type = optarg;
			break;
		case 'e':
			o.existing_key = optarg;
			break;
		case 'c':
			o.cert = optarg;
			break;
		case 'h':
			o.hash = optarg;
			break;
		case 'v':
			if (number_option("--validity", optarg, 36500, &o.validity))
				return EXIT_USAGE;
			break;
		case 's':
			o.server_name = optarg;
			break;
		case 'U':
			o.url_base = optarg;
			break;
		case 'B':
			o.database = optarg;
			break;
		case 'S':
			o.subordinate = true;
			break;
		case 'm':
			o.module = optarg;
			break;
		case 't':
			o.token = optarg;
			break;
		case 'p':
			o.pin_file = optarg;
			break;
		case 'T':
			o.template_name = optarg;
			break;
		case 'o':
			o.out = optarg;
			break;
		case 'r':
			o.reason = optarg;
			break;
		case 'D':
			o.date = optarg;
			break;
		case 'u':
			o.status = optarg;
			break;
		case 'f':
			o.file = optarg;
			break;
		case 'x':
			o.delta = true;
			break;
		case 'j':
			o.json = true;
			break;
		case 'O':
			o.out_dir = optarg;
			break;
		case 'N':
			if (number_option("--threads", optarg, 64, &o.threads))
				return EXIT_USAGE;
			break;
		case 'L':
			o.listen = optarg;
			break;
		case 'E':
			o.der = true;
			break;
		case 'F':
			o.force = true;
			break;
		case 'Y':
			o.yes = true;
			break;
		case 'A':
			if (o.n_sets == sizeof o.sets / sizeof o.sets[0]) {
				fprintf(stderr, "keyward-ca: --set: at most %zu\n", sizeof o.sets / sizeof o.sets[0]);
				return EXIT_USAGE;
			}
			o.sets[o.n_sets++] = optarg;
			break;
		case 'R':
			o.from = optarg;
			break;
		case 'C':
			o.config = optarg;
			break;
		case 'X':
			o.remove = true;
			break;
		case 'Z':
			o.dry_run = true;
			break;
		case 'q':
			o.quiet = true;
			break;
		case 'H':
			usage(stdout);
			return 0;
		case 'W':
			printf("keyward-ca %s\n", KEYWARD_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return EXIT_USAGE;
	}
	cmd = argv[optind];
	args = argv + optind + 1;
	nargs = argc - optind - 1;
	if (strcmp(cmd, "help") == 0 && nargs == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "version") == 0 && nargs == 0) {
		printf("keyward-ca %s\n", KEYWARD_VERSION);
		return 0;
	}
#define NEED(n)                                                                                                        \
	do {                                                                                                           \
		if (nargs != (n)) {                                                                                    \
			fprintf(stderr, "keyward-ca: %s takes %d argument%s\n", cmd, (n), (n) == 1 ? "" : "s");        \
			return EXIT_USAGE;                                                                             \
		}                                                                                                      \
	} while (0)
	if (!strcmp(cmd, "setup")) {
		NEED(0);
		rc = cmd_setup(&o);
	} else if (!strcmp(cmd, "install-cert")) {
		NEED(1);
		rc = cmd_install_cert(&o, args[0]);
	} else if (!strcmp(cmd, "keys")) {
		NEED(0);
		rc = cmd_keys(&o);
	} else if (!strcmp(cmd, "templates")) {
		rc = cmd_templates(&o, nargs, args);
	} else if (!strcmp(cmd, "submit")) {
		rc = cmd_submit(&o, nargs, args);
	} else if (!strcmp(cmd, "approve") || !strcmp(cmd, "deny")) {
		NEED(1);
		rc = cmd_decide(&o, args[0], cmd[0] == 'a');
	} else if (!strcmp(cmd, "revoke") || !strcmp(cmd, "unrevoke")) {
		NEED(1);
		rc = cmd_revoke(&o, args[0], cmd[0] == 'u');
	} else if (!strcmp(cmd, "list")) {
		NEED(0);
		rc = cmd_list(&o);
	} else if (!strcmp(cmd, "view")) {
		NEED(1);
		rc = cmd_view(&o, args[0]);
	} else if (!strcmp(cmd, "ca.cert") || !strcmp(cmd, "ca.chain")) {
		NEED(1);
		rc = cmd_export(&o, args[0], cmd[3] == 'c' && cmd[4] == 'h');
	} else if (!strcmp(cmd, "crl")) {
		NEED(0);
		rc = cmd_crl(&o);
	} else if (!strcmp(cmd, "config")) {
		rc = cmd_config(&o, nargs, args);
	} else if (!strcmp(cmd, "serve")) {
		NEED(0);
		rc = cmd_serve(&o);
	} else if (!strcmp(cmd, "acme-eab")) {
		NEED(1);
		rc = cmd_acme_eab(&o, args[0]);
	} else if (!strcmp(cmd, "cmp-secret")) {
		NEED(1);
		rc = cmd_cmp_secret(&o, args[0]);
	} else if (!strcmp(cmd, "audit")) {
		NEED(0);
		rc = cmd_audit(&o);
	} else if (!strcmp(cmd, "backupdb")) {
		NEED(1);
		rc = cmd_backupdb(&o, args[0]);
	} else if (!strcmp(cmd, "restoredb")) {
		NEED(1);
		rc = cmd_restoredb(&o, args[0]);
	} else if (!strcmp(cmd, "database")) {
		rc = cmd_database(&o, nargs, args);
	} else if (!strcmp(cmd, "retire")) {
		NEED(0);
		rc = cmd_retire(&o);
	} else if (!strcmp(cmd, "migrate")) {
		NEED(0);
		rc = cmd_migrate(&o);
	} else if (!strcmp(cmd, "status")) {
		NEED(0);
		rc = cmd_status(&o);
	} else {
		fprintf(stderr, "keyward-ca: unknown command \"%s\"\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}
	if (rc) {
		fprintf(stderr, "keyward-ca: %s: %s\n", cmd, ca_last_error());
		return ca_last_error_kind() == CA_ERR_USAGE ? EXIT_USAGE : EXIT_ERROR;
	}
	return 0;
}
