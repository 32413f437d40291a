/*
 * vm/json.h — JSON text to SGL values (json_decode). Encoding is
 * val_to_json in vm/value.h.
 *
 * Objects become insertion-ordered maps (key order kept; a repeated key
 * keeps its first position and its last value), numbers without a fraction
 * or exponent that fit in int64 become ints, every other number a float.
 * Strings must be valid UTF-8; \u escapes (with surrogate pairs) are decoded.
 * Nesting deeper than JSON_MAX_DEPTH is an error.
 */
#ifndef SGL_VM_JSON_H
#define SGL_VM_JSON_H

#include "vm/value.h"

#define JSON_MAX_DEPTH 512

/* Parses the whole of s[0..len) (surrounding whitespace allowed) into *out.
 * Returns 0, or -1 with a message such as "line 1, column 7: expected ':'"
 * in err (always NUL-terminated). Objects are allocated on h; on error the
 * partial objects are garbage for the next collection. */
int json_decode(Heap *h, const char *s, size_t len, Value *out, char *err, size_t errsize);

#endif
