/*
 * The PKCS#11 conformance runner (issue 16's "measure"): runs the checks
 * of conform_checks.c on several modules in one run and prints passes,
 * failures and policy refusals per area, side by side, then every failure
 * and refusal with its reason.
 *
 *   conform_runner [--gate NAME] NAME MODULE PIN_FILE [NAME MODULE PIN_FILE ...]
 *
 * Each module runs on the first slot with a token, in a child process of
 * its own (a module's state, or its crash, stays there); the child sends
 * its results back over a pipe. Exit status 1 when the module named by
 * --gate failed a check (a policy refusal is not a failure: keyward
 * documents each one in docs/pkcs11.md), 2 on a usage or set-up error.
 *
 * Only the gated module's child exits through exit(), where
 * LeakSanitizer looks: the comparison modules (SoftHSM2) are not ours to
 * check for leaks, and theirs must not fail the run.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conform.h"

#define MAX_MODULES 4

struct module_run {
	const char *name, *path, *pin_file;
	enum cr_outcome *outcome; /* per check */
	char (*why)[sizeof((struct cr_ctx *)0)->why];
	int ran;
};

static int read_pin(const char *file, char *pin, size_t size)
{
	FILE *fp = fopen(file, "r");
	int ok = fp && fgets(pin, (int)size, fp) != NULL;

	if (fp)
		fclose(fp);
	if (ok)
		pin[strcspn(pin, "\r\n")] = '\0';
	return ok;
}

/* In the child: every check on the module, one line per check to fd ("<index> <outcome> <why>"). */
static int run_module(const struct module_run *m, FILE *out)
{
	void *lib = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
	CK_C_GetFunctionList get;
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	char pin[128];
	struct cr_ctx c;

	memset(&c, 0, sizeof c);
	if (!lib || !(*(void **)&get = dlsym(lib, "C_GetFunctionList")) || get(&c.f) != CKR_OK) {
		fprintf(stderr, "conform_runner: %s: cannot load %s: %s\n", m->name, m->path, dlerror());
		return 2;
	}
	if (!read_pin(m->pin_file, pin, sizeof pin)) {
		fprintf(stderr, "conform_runner: %s: cannot read the PIN from %s\n", m->name, m->pin_file);
		return 2;
	}
	if (c.f->C_Initialize(NULL) != CKR_OK || c.f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n == 0) {
		fprintf(stderr, "conform_runner: %s: no token (C_Initialize, C_GetSlotList)\n", m->name);
		return 2;
	}
	c.slot = slots[0];
	c.pin = pin;
	for (size_t i = 0; i < cr_n_checks; i++) {
		enum cr_outcome o;

		c.why[0] = '\0';
		o = cr_checks[i].run(&c);
		c.why[strcspn(c.why, "\n")] = '\0';
		fprintf(out, "%zu %d %s\n", i, (int)o, c.why);
		fflush(out);
	}
	cr_cleanup(&c);
	c.f->C_Finalize(NULL);
	return 0;
}

/* Runs module m in a child and reads its results; 0 if every check reported. */
static int run_child(struct module_run *m, int gated)
{
	int fds[2], status = 0;
	pid_t pid;
	FILE *in;
	char line[512];

	if (pipe(fds) != 0 || (pid = fork()) < 0)
		return -1;
	if (pid == 0) {
		FILE *out = fdopen(fds[1], "w");
		int rc;

		close(fds[0]);
		rc = out ? run_module(m, out) : 2;
		if (out)
			fclose(out);
		if (gated)
			exit(rc);
		_exit(rc);
	}
	close(fds[1]);
	in = fdopen(fds[0], "r");
	while (in && fgets(line, sizeof line, in)) {
		size_t i;
		int o, off = 0;

		if (sscanf(line, "%zu %d %n", &i, &o, &off) < 2 || i >= cr_n_checks)
			continue;
		m->outcome[i] = (enum cr_outcome)o;
		snprintf(m->why[i], sizeof m->why[i], "%.*s", (int)strcspn(line + off, "\n"), line + off);
		m->ran++;
	}
	if (in)
		fclose(in);
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "conform_runner: %s: the run ended with status 0x%x after %d checks\n", m->name, status,
			m->ran);
	return m->ran == (int)cr_n_checks ? 0 : -1;
}

static void count(const struct module_run *m, const char *area, int n[3])
{
	n[0] = n[1] = n[2] = 0;
	for (size_t i = 0; i < cr_n_checks; i++)
		if (!area || !strcmp(cr_checks[i].area, area))
			n[i < (size_t)m->ran ? m->outcome[i] : CR_FAIL]++;
}

int main(int argc, char **argv)
{
	struct module_run mods[MAX_MODULES];
	const char *gate = NULL;
	size_t n = 0;
	int argi = 1, failed = 0;

	if (argc > 2 && !strcmp(argv[1], "--gate")) {
		gate = argv[2];
		argi = 3;
	}
	if ((argc - argi) % 3 || argc - argi == 0 || (argc - argi) / 3 > MAX_MODULES) {
		fprintf(stderr,
			"usage: conform_runner [--gate NAME] NAME MODULE PIN_FILE [NAME MODULE PIN_FILE ...]\n");
		return 2;
	}
	for (; argi < argc; argi += 3, n++) {
		mods[n] = (struct module_run){.name = argv[argi], .path = argv[argi + 1], .pin_file = argv[argi + 2]};
		mods[n].outcome = calloc(cr_n_checks, sizeof *mods[n].outcome);
		mods[n].why = calloc(cr_n_checks, sizeof *mods[n].why);
		if (!mods[n].outcome || !mods[n].why)
			return 2;
		for (size_t i = 0; i < cr_n_checks; i++)
			mods[n].outcome[i] = CR_FAIL;
		if (run_child(&mods[n], gate && !strcmp(gate, mods[n].name)) && gate && !strcmp(gate, mods[n].name))
			failed = 1;
	}
	/* the table: per area, per module, pass / fail / policy */
	printf("%-16s", "area");
	for (size_t j = 0; j < n; j++)
		printf("  %-20s", mods[j].name);
	printf("\n%-16s", "");
	for (size_t j = 0; j < n; j++)
		printf("  %-20s", "pass fail policy");
	printf("\n");
	for (size_t a = 0; a <= cr_n_areas; a++) {
		printf("%-16s", a < cr_n_areas ? cr_areas[a] : "total");
		for (size_t j = 0; j < n; j++) {
			int k[3];

			count(&mods[j], a < cr_n_areas ? cr_areas[a] : NULL, k);
			printf("  %4d %4d %6d     ", k[CR_PASS], k[CR_FAIL], k[CR_POLICY]);
		}
		printf("\n");
	}
	printf("\n");
	for (size_t j = 0; j < n; j++)
		for (size_t i = 0; i < cr_n_checks; i++) {
			if (mods[j].outcome[i] == CR_PASS)
				continue;
			printf("%-10s %-6s %s: %s: %s\n", mods[j].name,
			       mods[j].outcome[i] == CR_FAIL ? "FAIL" : "policy", cr_checks[i].area, cr_checks[i].name,
			       mods[j].why[i][0] ? mods[j].why[i] : "(no report)");
			if (gate && !strcmp(gate, mods[j].name) && mods[j].outcome[i] == CR_FAIL)
				failed = 1;
		}
	for (size_t j = 0; j < n; j++) {
		free(mods[j].outcome);
		free(mods[j].why);
	}
	return failed;
}
