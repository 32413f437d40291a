/*
 * base/utf8.h — UTF-8 encoding, decoding and validation: the one copy.
 *
 * "Valid" means well-formed UTF-8 as Unicode defines it: no overlong forms,
 * no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated
 * sequences. Pure functions; no state, any thread.
 *
 *   bytes   first byte   second byte  (rest: 80..BF)
 *     1     00..7F
 *     2     C2..DF       80..BF
 *     3     E0           A0..BF
 *           E1..EC EE EF 80..BF
 *           ED           80..9F        (no surrogates)
 *     4     F0           90..BF
 *           F1..F3       80..BF
 *           F4           80..8F        (nothing above U+10FFFF)
 */
#ifndef SGL_BASE_UTF8_H
#define SGL_BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define UTF8_MAX 4      /* bytes of the longest sequence */

/* Writes code point cp (<= U+10FFFF; surrogates are encoded as they are, for
 * callers that carry raw code points) to out; returns its byte count 1..4,
 * or 0 when cp is above U+10FFFF (nothing written). */
int utf8_encode(uint32_t cp, char out[UTF8_MAX]);

/* Decodes the well-formed sequence at s (n bytes available): its length
 * 1..4 and *cp, or 0 when s[0..] does not start a valid sequence (or n is 0). */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Offset of the first byte of s[0..len) that does not start a valid
 * sequence, or len when it is all valid. */
size_t utf8_invalid_at(const char *s, size_t len);

static inline bool utf8_valid(const char *s, size_t len) { return utf8_invalid_at(s, len) == len; }

/* Code points in s[0..len): bytes that are not continuation bytes (exact for
 * valid text). */
size_t utf8_count(const char *s, size_t len);

/* Length a sequence starting with lead byte c claims (1..4), or 0 for a
 * byte that cannot start one (a continuation byte, C0, C1, F5..FF). */
int utf8_lead_len(unsigned char c);

#endif
