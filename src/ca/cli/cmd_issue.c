/*
 * keyward-ca submit, approve, deny. Every certificate goes through the
 * library's issuance pipeline; a certificate is printed only once the
 * library says it is committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ca/cli/cli.h"

/* Whether the directory of path accepts a new file. */
static bool dir_writable(const char *path)
{
	char dir[CA_PATH_MAX];
	const char *slash = strrchr(path, '/');

	if (!slash)
		return access(".", W_OK) == 0;
	snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) + (slash == path), path);
	return access(dir, W_OK) == 0;
}

struct submission {
	const struct opts *o;
	char **files;
	int n;
	bool progress;	       /* a progress line on standard error (a terminal, not --quiet) */
	struct timespec shown; /* when it was last redrawn */
};

/* "issued I of N" on the terminal (cli_progress). */
static void show_progress(struct submission *s, size_t i)
{
	if (s->progress)
		cli_progress(&s->shown, i + 1 >= (size_t)s->n, "issued %zu of %d", i + 1, s->n);
}

static struct ca_request *read_request(void *arg, size_t i, struct ca_key_decoder *d)
{
	struct submission *s = arg;

	return ca_request_read(s->files[i], d);
}

/* One certificate issued (committed): its line, then the certificate where it goes. */
static int tell_issued(void *arg, size_t i, const struct ca_issued *c)
{
	struct submission *s = arg;
	const struct opts *o = s->o;
	char path[CA_PATH_MAX + 100];
	bool many = s->n > 1 || o->out_dir;

	if (o->json) {
		json_t *j = json_pack("{s:s, s:s}", "status", "issued", "serial", c->serial);

		if (many && j)
			json_object_set_new(j, "request", json_string(s->files[i]));
		/* nothing but JSON on standard output: a certificate with nowhere else to go goes in it */
		if (!o->out && !o->out_dir && j)
			json_object_set_new(j, "certificate", cli_pem_json(c->der, c->der_len));
		if (!j || json_dumpf(j, stdout, JSON_COMPACT) || fputc('\n', stdout) == EOF) {
			json_decref(j);
			return ca_fail(CA_ERR_FAILED, "cannot write to standard output (serial %s is issued)",
				       c->serial);
		}
		json_decref(j);
		if (!o->out && !o->out_dir)
			return fflush(stdout) == 0 ? 0 : ca_fail(CA_ERR_FAILED, "cannot write to standard output");
	} else if (many) {
		printf("issued %s %s\n", c->serial, s->files[i]);
	} else {
		printf("issued %s\n", c->serial);
	}
	fflush(stdout);
	show_progress(s, i);
	if (!o->out_dir)
		return cli_write_cert(o->out, c->der, c->der_len);
	if (snprintf(path, sizeof path, "%s/%s.pem", o->out_dir, c->serial) >= (int)sizeof path)
		return ca_fail(CA_ERR_USAGE, "--out-dir %s: name too long", o->out_dir);
	return cli_write_cert(path, c->der, c->der_len);
}

/* Requests for a template that wants approval: each checked now, then recorded as pending. */
static int submit_pending(struct ca *ca, const struct ca_template *t, const struct opts *o, int n, char **files)
{
	struct ca_key_decoder *d = ca_key_decoder_new();
	struct ca_request **reqs = calloc((size_t)n, sizeof *reqs);
	int rc = d && reqs ? 0 : ca_fail(CA_ERR_FAILED, "out of memory");

	/* all read and checked first: one bad request submits none */
	for (int i = 0; i < n && !rc; i++)
		if (!(reqs[i] = ca_request_read(files[i], d)))
			rc = -1;
		else if (ca_request_check(t, reqs[i]))
			rc = ca_fail(CA_ERR_REFUSED, "%s: %s", files[i], ca_last_error());
	for (int i = 0; i < n && !rc; i++) {
		long long id;

		if (ca_submit_pending(ca, t, reqs[i], &id))
			rc = ca_fail(ca_last_error_kind(), "%s: %s", files[i], ca_last_error());
		else if (o->json) {
			json_t *j = json_pack("{s:s, s:I}", "status", "pending", "request", (json_int_t)id);

			if (!j || json_dumpf(j, stdout, JSON_COMPACT) || fputc('\n', stdout) == EOF)
				rc = ca_fail(CA_ERR_FAILED, "cannot write to standard output (request %lld is pending)",
					     id);
			json_decref(j);
		} else
			printf("pending %lld\n", id);
	}
	for (int i = 0; reqs && i < n; i++)
		ca_request_free(reqs[i]);
	free(reqs);
	ca_key_decoder_free(d);
	return rc;
}

int cmd_submit(const struct opts *o, int nfiles, char **files)
{
	/* a line per certificate goes to standard output; the terminal also sees how far a long batch is */
	struct submission s = {.o = o,
			       .files = files,
			       .n = nfiles,
			       .progress = nfiles > 1 && !o->quiet && isatty(STDERR_FILENO) && !isatty(STDOUT_FILENO)};
	const struct ca_template *t;
	struct ca *ca = NULL;
	int rc = -1;

	if (nfiles < 1)
		return ca_fail(CA_ERR_USAGE, "submit needs a request file");
	if (!o->template_name)
		return ca_fail(CA_ERR_USAGE, "submit needs --template NAME (templates list)");
	if (o->out && nfiles > 1)
		return ca_fail(CA_ERR_USAGE, "--out names one file: with several requests use --out-dir");
	/* the key only once it is needed: a request refused, or one left pending, needs no HSM login */
	if (cli_open(o, CA_OPEN_CERT, &ca))
		goto out;
	if (!(t = ca_template_named(ca, o->template_name)))
		goto out;
	if (t->manual) {
		rc = submit_pending(ca, t, o, nfiles, files);
		goto out;
	}
	/* where the certificates go is checked before anything is issued */
	if (o->out_dir && access(o->out_dir, W_OK) != 0) {
		ca_fail(CA_ERR_FAILED, "--out-dir %s: %s; nothing issued", o->out_dir, strerror(errno));
		goto out;
	}
	if (o->out && (access(o->out, F_OK) == 0 ? access(o->out, W_OK) != 0 : !dir_writable(o->out))) {
		ca_fail(CA_ERR_FAILED, "cannot write %s: its directory is missing or not writable; nothing issued",
			o->out);
		goto out;
	}
	{
		struct ca_batch b = {.t = t,
				     .n = (size_t)nfiles,
				     .get = read_request,
				     .get_arg = &s,
				     .done = tell_issued,
				     .done_arg = &s,
				     .names = (const char *const *)files,
				     .threads = o->threads};

		rc = ca_issue_batch(ca, &b);
	}
out:
	ca_close(ca);
	return rc;
}

int cmd_decide(const struct opts *o, const char *id_text, bool approve)
{
	char *end;
	long long id = strtoll(id_text, &end, 10);
	struct ca_issued c = {0};
	struct ca *ca = NULL;
	int rc = -1;

	if (*end || id <= 0)
		return ca_fail(CA_ERR_USAGE, "\"%s\" is not a request number", id_text);
	if (cli_open(o, approve ? CA_OPEN_CERT : 0, &ca))
		goto out;
	if (!approve) {
		if ((rc = ca_deny(ca, id)) == 0)
			printf("denied %lld\n", id);
		goto out;
	}
	if (ca_approve(ca, id, &c))
		goto out;
	if (o->json) {
		json_t *j =
			json_pack("{s:s, s:s, s:I}", "status", "issued", "serial", c.serial, "request", (json_int_t)id);

		if (j && !o->out)
			json_object_set_new(j, "certificate", cli_pem_json(c.der, c.der_len));
		rc = cli_print_json(j);
		if (!rc && o->out)
			rc = cli_write_cert(o->out, c.der, c.der_len);
		goto out;
	}
	printf("issued %s\n", c.serial);
	fflush(stdout);
	rc = cli_write_cert(o->out, c.der, c.der_len);
out:
	ca_issued_free(&c);
	ca_close(ca);
	return rc;
}
