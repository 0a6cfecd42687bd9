/*
 * keyward-ca's one error type. A library function that fails returns -1
 * (or NULL) after recording, for the calling thread, what went wrong and
 * its kind; the front end translates the kind at its boundary: an exit
 * status on the command line, an HTTP status or a protocol error in serve.
 * The message says what and where, for a person to read.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ca/ca.h"

static _Thread_local char last_error[1024]; /* per thread: issuance signs on several, serve answers on several */
static _Thread_local enum ca_err last_kind;

static int record(enum ca_err kind, const char *fmt, va_list ap)
{
	char message[sizeof last_error];

	/* formatted apart first: the arguments may be the last error itself */
	vsnprintf(message, sizeof message, fmt, ap);
	memcpy(last_error, message, sizeof last_error);
	last_kind = kind;
	return -1;
}

int ca_fail(enum ca_err kind, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(kind, fmt, ap);
	va_end(ap);
	return rc;
}

int ca_error(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(CA_ERR_FAILED, fmt, ap);
	va_end(ap);
	return rc;
}

int ca_usage_error(const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = record(CA_ERR_USAGE, fmt, ap);
	va_end(ap);
	return rc;
}

const char *ca_last_error(void)
{
	return last_error;
}

enum ca_err ca_last_error_kind(void)
{
	return last_kind;
}
