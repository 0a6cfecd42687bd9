/*
 * keyward-ca config and templates: the configuration shown and changed
 * (each change checked and audited by the library).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca/cli/cli.h"

#define TEMPLATES_USAGE "templates: list, show NAME, add NAME --file F, remove NAME"

int cmd_templates(const struct opts *o, int argc, char **argv)
{
	const struct ca_conf *c;
	struct ca *ca = NULL;
	int rc = -1;

	if (argc < 1)
		return ca_fail(CA_ERR_USAGE, TEMPLATES_USAGE);
	if (cli_open(o, 0, &ca))
		goto out;
	c = ca_config(ca);
	if (!strcmp(argv[0], "list") && argc == 1) {
		for (size_t i = 0; i < c->n_templates; i++)
			printf("%-16s %s%s\n", c->templates[i].name, c->templates[i].builtin ? "built in" : "ca.conf",
			       c->templates[i].manual ? ", manual approval" : "");
		rc = 0;
	} else if (!strcmp(argv[0], "show") && argc == 2) {
		const struct ca_template *t = ca_template_named(ca, argv[1]);

		if (t) {
			printf("[template %s]\n", t->name);
			ca_template_print(t, stdout);
			rc = 0;
		}
	} else if (!strcmp(argv[0], "add") && argc == 2 && o->file) {
		if ((rc = ca_template_add_file(ca, argv[1], o->file)) == 0)
			printf("template %s added\n", argv[1]);
	} else if (!strcmp(argv[0], "remove") && argc == 2) {
		bool builtin_again = false;

		if ((rc = ca_template_remove(ca, argv[1], &builtin_again)) == 0)
			printf("template %s removed%s\n", argv[1],
			       builtin_again ? " (the built-in of that name applies again)" : "");
	} else {
		ca_fail(CA_ERR_USAGE, TEMPLATES_USAGE);
	}
out:
	ca_close(ca);
	return rc;
}

int cmd_config(const struct opts *o, int argc, char **argv)
{
	struct ca *ca = NULL;
	int rc = -1;

	if (!(argc == 0 || (argc == 1 && !strcmp(argv[0], "show")) || (argc == 3 && !strcmp(argv[0], "set")) ||
	      (argc == 2 && (!strcmp(argv[0], "export") || !strcmp(argv[0], "import")))))
		return ca_fail(CA_ERR_USAGE,
			       "config [show], config set KEY VALUE, config export FILE, or config import "
			       "FILE [--set KEY=VALUE]...");
	if (o->n_sets && strcmp(argv[0], "import"))
		return ca_fail(CA_ERR_USAGE, "--set goes with config import");
	if (cli_open(o, 0, &ca))
		goto out;
	if (argc == 2 && !strcmp(argv[0], "export")) {
		if ((rc = ca_config_export(ca, argv[1])) == 0)
			printf("exported the configuration of CA \"%s\" to %s (no host settings: module, pin_file, "
			       "server_name)\n",
			       ca_config(ca)->name, argv[1]);
	} else if (argc == 2) {
		if ((rc = ca_config_import(ca, argv[1], o->sets, o->n_sets)) == 0)
			printf("imported %s into CA \"%s\"\n", argv[1], ca_config(ca)->name);
	} else if (argc == 3) {
		bool changed = false;

		if ((rc = ca_config_set(ca, argv[1], argv[2], &changed)) == 0)
			printf("%s = %s%s\n", argv[1], argv[2], changed ? "" : " (unchanged)");
	} else {
		char *text = ca_conf_text(ca_config(ca)), pin_file[CA_PATH_MAX];

		if (text) {
			fputs(text, stdout);
			/* what this host resolves for itself: not part of the CA's configuration (config export) */
			ca_host_pin_file(ca_config(ca), pin_file, sizeof pin_file);
			printf("\n# this host: module %s, PIN file %s\n", ca_host_module(ca_config(ca)),
			       pin_file[0] ? pin_file : "(none: no login)");
			rc = 0;
		}
		free(text);
	}
out:
	ca_close(ca);
	return rc;
}
