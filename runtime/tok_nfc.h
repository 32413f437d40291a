/*
 * runtime/tok_nfc.h — Unicode NFC (UAX #15) for the tokenizer's NFC
 * normalizer step (Qwen2's tokenizer.json).
 *
 * Owns: the Unicode tables (generated, see tok_nfc.c) and canonical
 * decomposition, ordering and composition. Does not own: the tokenizer
 * (which calls this, never the other way round: this module includes only
 * base/ and the C library).
 *
 * Ownership: tok_nfc returns a malloc'd buffer the caller frees. Threads:
 * no state; any thread.
 */
#ifndef SGL_RUNTIME_TOK_NFC_H
#define SGL_RUNTIME_TOK_NFC_H

#include <stdbool.h>
#include <stddef.h>

/* True when NFC(s) == s is guaranteed: no character in s has
 * NFC_Quick_Check != Yes or a non-zero canonical combining class. */
bool tok_nfc_stable(const char *s, size_t len);

/* NFC of s into a malloc'd buffer (*out, *out_len; NUL-terminated).
 * Invalid UTF-8 bytes pass through unchanged. 0 or ERR_NOMEM. */
int tok_nfc(const char *s, size_t len, char **out, size_t *out_len);

#endif
