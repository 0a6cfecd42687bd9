/*
 * Secrets read from files: PINs, passphrases, setup passwords. One reader
 * for every program, so each refuses the same files with the same words.
 * The declaration is public (keyward.h: kw_secret_read_file); this header
 * is for the code inside the tree that includes common/ headers.
 */
#ifndef KW_COMMON_SECRET_H
#define KW_COMMON_SECRET_H

#include <keyward/keyward.h>

#endif
