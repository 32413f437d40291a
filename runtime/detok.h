/*
 * runtime/detok.h — streaming detokenization with stop strings.
 *
 * Owns: turning generated token ids, one at a time, into UTF-8 text that is
 * safe to send: never half a character, never text that might turn out to
 * be the start of a stop string. Does not own: the vocabulary
 * (runtime/tokenizer.h), stop *token ids* and EOS (the engine checks ids
 * before feeding them), the sampler.
 *
 *   feed(id) ─► piece bytes ─► pend  (bytes of an unfinished UTF-8 sequence)
 *                               │ complete characters; invalid bytes -> U+FFFD
 *                               ▼
 *                              hold  (a suffix that is a prefix of a stop string)
 *                               │ released once it cannot start a stop string
 *                               ▼
 *                              out   (all text released so far; each call
 *                                     returns the part it added)
 *
 * A stop string is found across token boundaries: "<|end" + "|>" stops on
 * the second token. When one is found the text before it is released (the
 * stop string itself too under DETOK_KEEP_STOP), the detokenizer is stopped
 * and detok_stop_index says which one matched; the earliest match in the
 * text wins, then the earliest in the list.
 *
 * Leading space: SentencePiece pieces carry the word's space ("▁Hello" ->
 * " Hello"); decoding a sequence *from its start* drops one leading space
 * (the dummy prefix). Pass DETOK_STRIP_LEADING_SPACE for that (when
 * tok_decode_strips_space is true and the first fed token starts the text);
 * leave it off when generation continues a prompt, where the space is real.
 *
 * Ownership: detok_new borrows the Tokenizer (it must outlive the Detok) and
 * copies the stop strings. Returned text pointers are owned by the Detok and
 * valid until the next call on it. Every detok_new has a detok_free.
 * Threads: one Detok belongs to one thread.
 */
#ifndef SGL_RUNTIME_DETOK_H
#define SGL_RUNTIME_DETOK_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/tokenizer.h"

typedef struct Detok Detok;

enum {
    DETOK_SKIP_SPECIAL = 1 << 0,        /* control/unknown tokens add no text */
    DETOK_STRIP_LEADING_SPACE = 1 << 1, /* drop one space at the very start */
    DETOK_KEEP_STOP = 1 << 2,           /* include the matched stop string */
};

/* detok_feed / detok_flush results (errors are negative ERR_*). */
enum { DETOK_MORE = 0, DETOK_STOPPED = 1 };

/* stops: nstops NUL-terminated strings (empty ones are ignored); may be NULL
 * when nstops is 0. Returns 0, ERR_ARG or ERR_NOMEM. */
int detok_new(const Tokenizer *t, const char *const *stops, int nstops, unsigned flags, Detok **out);
void detok_free(Detok *d);

/* Feeds one token id. *text and *len receive the text this call released (may
 * be empty). Returns DETOK_MORE, DETOK_STOPPED (a stop string completed now
 * or earlier: further ids add nothing), ERR_ARG (id outside the
 * vocabulary) or ERR_NOMEM. */
int detok_feed(Detok *d, int32_t id, const char **text, size_t *len);

/* Generation ended (EOS, max_tokens): releases everything held. An
 * unfinished UTF-8 sequence becomes U+FFFD; a held partial stop string is
 * released as text. Returns DETOK_MORE (nothing stopped), DETOK_STOPPED or
 * ERR_NOMEM. */
int detok_flush(Detok *d, const char **text, size_t *len);

/* Index into the stop list of the matched stop string, or -1. */
int detok_stop_index(const Detok *d);

/* All text released so far (NUL-terminated). */
const char *detok_text(const Detok *d, size_t *len);

/* Number of bytes currently held back (unfinished UTF-8 plus a possible
 * stop-string prefix) — what flush would still release. */
size_t detok_pending(const Detok *d);

/* Forgets all text and the stop state; keeps stops and flags. */
void detok_reset(Detok *d);

#endif
