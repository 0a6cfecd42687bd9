/* Internal side of the error enum: setting the thread's message. */
#ifndef KW_COMMON_ERROR_H
#define KW_COMMON_ERROR_H

#include <keyward/keyward.h>

/* Sets the calling thread's message and returns rv, so: return kw_error_set(...). */
kw_rv kw_error_set(kw_rv rv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Like kw_error_set, then ": <OpenSSL's reason>" when OpenSSL's error queue
 * holds one; empties the queue either way.
 */
kw_rv kw_error_openssl(kw_rv rv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void kw_error_clear(void);

#endif
