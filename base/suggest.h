/*
 * base/suggest.h — "did you mean": the closest of a set of known names to
 * a misspelt one, for the messages about unknown names, options, commands
 * and flags.
 *
 *   suggest("tempreature", {"temperature", "top_p", ...}) ─► "temperature"
 *
 * Closeness is the optimal-string-alignment distance (insertions,
 * deletions, substitutions and transpositions of adjacent bytes, ASCII
 * case ignored). A candidate is offered when its distance is at most 1
 * for words of up to 4 bytes, 2 up to 8 and 3 beyond, or when one word is
 * a prefix of the other and the shorter has at least 3 bytes; the
 * nearest wins, the first listed among equals. Pure; no allocation.
 */
#ifndef SGL_BASE_SUGGEST_H
#define SGL_BASE_SUGGEST_H

#include <stddef.h>

/* The best of cands[0..n) for word, or NULL when none is close. NULL
 * entries are skipped. */
const char *suggest(const char *word, const char *const *cands, size_t n);

/* Appends " (did you mean 'X'?)" to buf[0..cap) when suggest finds an X;
 * returns buf. buf must hold a NUL-terminated string. */
char *suggest_append(char *buf, size_t cap, const char *word, const char *const *cands, size_t n);

#endif
