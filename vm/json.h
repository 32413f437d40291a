/*
 * vm/json.h — the one JSON reader and the one JSON writer for SGL values.
 *
 * Everything that turns JSON text into SGL values goes through json_decode:
 * `name=value` command-line arguments and --args files (through
 * include/sgl.h's sgl_args_*), the arguments JSON of sgl_run/sgl_run_batch,
 * and the json_decode built-in. Everything that writes SGL values as JSON
 * goes through json_encode and json_quote: the json_encode built-in, run
 * results ({"text", "vars", "value"}), the JSON Schema text gen sends, and
 * the quoting of strings inside lists and maps when they print (§3).
 * jansson remains for the runtime's plain JSON documents (tokenizer.json,
 * config.json, safetensors headers), which never become SGL values.
 *
 * The rules (LANGUAGE.md §12, "Values"):
 *   - objects become insertion-ordered maps (a repeated key keeps its first
 *     position and its last value);
 *   - a number without a fraction or exponent that fits in int64 is an int;
 *     every other number is a float, and an integer beyond int64 is the
 *     nearest float (99999999999999999999 reads as 1e+20), as JavaScript
 *     reads it;
 *   - strings must be valid UTF-8 (base/utf8.h), in the text and after \u
 *     escapes (surrogate pairs are joined; a lone surrogate is an error);
 *   - containers nest at most VAL_MAX_DEPTH deep (vm/value.h), reading and
 *     writing alike, so whatever is read can be written back.
 */
#ifndef SGL_VM_JSON_H
#define SGL_VM_JSON_H

#include "vm/value.h"

/* Where and why a text is not JSON. line and col are 1-based (col counts
 * code points); msg is always NUL-terminated. */
typedef struct {
    int line, col;
    char msg[160];
} JsonError;

/* Parses the whole of s[0..len) (surrounding whitespace allowed) into *out.
 * Returns 0, or -1 with *err filled in (then *out is nil). Objects are
 * allocated on h; on error the partial objects are garbage for the next
 * collection. */
int json_decode(Heap *h, const char *s, size_t len, Value *out, JsonError *err);

typedef enum {
    /* json_encode(): a value JSON cannot hold (NaN, an infinity, a
     * function, regex, grammar or module, a string that is not UTF-8, a
     * container nested deeper than VAL_MAX_DEPTH) fails the whole call. A
     * state is written as its text. */
    JSON_STRICT,
    /* Run results: the call never fails. What JSON_STRICT refuses is
     * written as a JSON string of its str() text (invalid UTF-8 as U+FFFD),
     * except a container nested too deeply, written "[...]" or "{...}" as
     * print shows it. A state is written as {"text": ..., "vars": {...}}. */
    JSON_RESULT,
} JsonMode;

/* Appends v to b as compact JSON (no spaces; integral floats without a
 * fraction). Map keys that are not strings are written as the JSON text of
 * the key, quoted ({1: "a"} is {"1":"a"}). Returns 0, or -1 in JSON_STRICT
 * mode with the first value it could not write in *bad (when bad is not
 * NULL); b then holds a partial text. */
int json_encode(StrBuf *b, Value v, JsonMode mode, Value *bad);

/* Appends s[0..len) as a JSON string literal: `"` and `\` escaped, control
 * characters as \n \t \r \b \f or \u00XX, everything else as it is. A byte
 * that does not start valid UTF-8 is written as U+FFFD and the call returns
 * -1 (the text is complete either way); 0 otherwise. */
int json_quote(StrBuf *b, const char *s, size_t len);

/* Copies v, a value made of nil, bools, numbers, strings, lists and maps
 * (what json_decode gives), onto heap h: lists and maps are copied deeply,
 * so the copy shares nothing with v. Returns 0, or -1 when out of memory or
 * when v holds anything else (then *out is nil). */
int json_copy(Heap *h, Value v, Value *out);

#endif
