/*
 * Signing load through any PKCS#11 module: N threads, one session each, sign
 * for S seconds with one private key and print the aggregate rate. It only
 * uses the standard API, so the same binary measures keyward-pkcs11.so and
 * the baseline (SoftHSM2) in one run of bench/p11.
 *
 *   keyward-bench-p11 MODULE SLOT PIN KEY_LABEL rsa|ecdsa THREADS SECONDS
 *
 * SLOT is an index into C_GetSlotList(CK_TRUE) or "label:NAME" for the slot
 * whose token is labelled NAME: slot numbering differs between modules,
 * token labels are what bench/p11 controls. "rsa" is CKM_SHA256_RSA_PKCS
 * over a 64-byte message, "ecdsa" CKM_ECDSA over a 32-byte digest. Every
 * signature is a full C_SignInit + C_Sign, as a typical caller makes it.
 *
 * Prints one line, as keyward-bench-sign does:
 * "<mech> <threads> <signatures> <seconds> <per-second>".
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#include "clock.h"

static CK_FUNCTION_LIST_PTR p11;
static CK_MECHANISM mech;
static CK_ULONG data_len;
static const char *key_label;
static pthread_barrier_t start_line;
static atomic_bool stop;

struct worker {
	pthread_t tid;
	CK_SESSION_HANDLE session;
	unsigned long count;
};

/* Any CKR other than CKR_OK ends the benchmark: a figure with errors in it means nothing. */
static void check(const char *call, CK_RV rv)
{
	if (rv == CKR_OK)
		return;
	fprintf(stderr, "keyward-bench-p11: %s: CKR 0x%08lx\n", call, (unsigned long)rv);
	exit(1);
}

static CK_OBJECT_HANDLE find_private_key(CK_SESSION_HANDLE s)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{CKA_CLASS, &cls, sizeof cls},
		{CKA_LABEL, (void *)key_label, strlen(key_label)},
	};
	CK_OBJECT_HANDLE key;
	CK_ULONG found = 0;

	check("C_FindObjectsInit", p11->C_FindObjectsInit(s, tmpl, 2));
	check("C_FindObjects", p11->C_FindObjects(s, &key, 1, &found));
	check("C_FindObjectsFinal", p11->C_FindObjectsFinal(s));
	if (found != 1) {
		fprintf(stderr, "keyward-bench-p11: no private key labelled \"%s\" on the token\n", key_label);
		exit(1);
	}
	return key;
}

static CK_ULONG sign_once(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE key, CK_BYTE *sig, CK_ULONG size)
{
	CK_BYTE data[64] = {1, 2, 3};
	CK_ULONG len = size;

	check("C_SignInit", p11->C_SignInit(s, &mech, key));
	check("C_Sign", p11->C_Sign(s, data, data_len, sig, &len));
	return len;
}

static bool all_zero(const CK_BYTE *p, CK_ULONG len)
{
	for (CK_ULONG i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static void *worker(void *arg)
{
	struct worker *w = arg;
	CK_OBJECT_HANDLE key = find_private_key(w->session);
	CK_BYTE sig[512] = {0};
	CK_ULONG len;

	/* warm up outside the timed loop: a connection made, the key unsealed in the HSM's cache */
	sign_once(w->session, key, sig, sizeof sig);
	memset(sig, 0, sizeof sig);
	pthread_barrier_wait(&start_line);

	/* sanity: the run's first signature has content; the rest only count */
	len = sign_once(w->session, key, sig, sizeof sig);
	if (len == 0 || all_zero(sig, len)) {
		fprintf(stderr, "keyward-bench-p11: empty signature (%lu bytes)\n", (unsigned long)len);
		exit(1);
	}
	w->count = 1;
	while (!atomic_load(&stop)) {
		sign_once(w->session, key, sig, sizeof sig);
		w->count++;
	}
	return NULL;
}

/* The label field is blank-padded, not NUL-terminated. */
static bool token_label_is(CK_SLOT_ID slot, const char *name)
{
	CK_TOKEN_INFO info;
	size_t n = strlen(name);

	check("C_GetTokenInfo", p11->C_GetTokenInfo(slot, &info));
	if (n > sizeof info.label || memcmp(info.label, name, n) != 0)
		return false;
	for (size_t i = n; i < sizeof info.label; i++)
		if (info.label[i] != ' ')
			return false;
	return true;
}

static CK_SLOT_ID pick_slot(const char *arg)
{
	CK_SLOT_ID slots[64];
	CK_ULONG n = 64;

	check("C_GetSlotList", p11->C_GetSlotList(CK_TRUE, slots, &n));
	if (strncmp(arg, "label:", 6) == 0) {
		for (CK_ULONG i = 0; i < n; i++)
			if (token_label_is(slots[i], arg + 6))
				return slots[i];
		fprintf(stderr, "keyward-bench-p11: no token labelled \"%s\" among %lu slots\n", arg + 6,
			(unsigned long)n);
		exit(1);
	}
	if ((CK_ULONG)atol(arg) >= n) {
		fprintf(stderr, "keyward-bench-p11: slot index %s, but only %lu slots have a token\n", arg,
			(unsigned long)n);
		exit(1);
	}
	return slots[atol(arg)];
}

int main(int argc, char **argv)
{
	CK_C_INITIALIZE_ARGS init = {.flags = CKF_OS_LOCKING_OK};
	CK_C_GetFunctionList get_function_list;
	struct worker *workers;
	unsigned threads;
	unsigned long total = 0;
	double seconds, start, elapsed;
	const char *pin;
	CK_SLOT_ID slot;
	CK_RV rv;
	void *module;

	if (argc != 8 || (strcmp(argv[5], "rsa") != 0 && strcmp(argv[5], "ecdsa") != 0)) {
		fprintf(stderr, "usage: keyward-bench-p11 MODULE SLOT_INDEX|label:NAME PIN KEY_LABEL rsa|ecdsa "
				"THREADS SECONDS\n");
		return 2;
	}
	pin = argv[3];
	key_label = argv[4];
	mech.mechanism = strcmp(argv[5], "rsa") == 0 ? CKM_SHA256_RSA_PKCS : CKM_ECDSA;
	data_len = mech.mechanism == CKM_ECDSA ? 32 : 64;
	threads = (unsigned)atoi(argv[6]);
	seconds = atof(argv[7]);
	if (threads == 0 || seconds <= 0) {
		fprintf(stderr, "keyward-bench-p11: THREADS and SECONDS must be positive\n");
		return 2;
	}

	if (!(module = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL))) {
		fprintf(stderr, "keyward-bench-p11: %s\n", dlerror());
		return 1;
	}
	if (!(get_function_list = (CK_C_GetFunctionList)dlsym(module, "C_GetFunctionList"))) {
		fprintf(stderr, "keyward-bench-p11: %s exports no C_GetFunctionList\n", argv[1]);
		return 1;
	}
	check("C_GetFunctionList", get_function_list(&p11));
	check("C_Initialize", p11->C_Initialize(&init));
	slot = pick_slot(argv[2]);

	if (!(workers = calloc(threads, sizeof *workers))) {
		fprintf(stderr, "keyward-bench-p11: out of memory\n");
		return 1;
	}
	for (unsigned i = 0; i < threads; i++)
		check("C_OpenSession",
		      p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &workers[i].session));
	/* login is per token (per module for keyward): once covers every session */
	rv = p11->C_Login(workers[0].session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	if (rv != CKR_USER_ALREADY_LOGGED_IN)
		check("C_Login", rv);

	pthread_barrier_init(&start_line, NULL, threads + 1);
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&workers[i].tid, NULL, worker, &workers[i]);
	pthread_barrier_wait(&start_line);
	start = now();
	wait_until(start, seconds);
	atomic_store(&stop, true);
	for (unsigned i = 0; i < threads; i++) {
		pthread_join(workers[i].tid, NULL);
		total += workers[i].count;
	}
	elapsed = now() - start;
	printf("%s %u %lu %.2f %.0f\n", argv[5], threads, total, elapsed, (double)total / elapsed);

	p11->C_Logout(workers[0].session);
	for (unsigned i = 0; i < threads; i++)
		p11->C_CloseSession(workers[i].session);
	p11->C_Finalize(NULL);
	pthread_barrier_destroy(&start_line);
	free(workers);
	/* no dlclose: some modules leave threads or atexit handlers behind */
	return 0;
}
