/*
 * runtime/rt_constrain.h — the runtime's side of structured generation:
 * the tokenizer's vocabulary as constrain/'s CVocab, a gen's constraint
 * (RtGenParams kind + source) compiled to a CGrammar, and `sgl check`'s
 * token-by-token judgement of a text.
 *
 *   Tokenizer ──rtc_vocab_new──► CVocab   (once per engine / check)
 *   RtGenParams.constraint ──rtc_compile──► CGrammar ──► engine request
 *   text ──tokenize (canonical or random)──► cm_fill_mask / cm_accept_token
 *        ──► accept | reject at BYTE                     (rtc_check)
 *
 * Pure functions over borrowed objects; any thread (a Tokenizer is not
 * shared across threads while encoding: rtc_check encodes with it).
 */
#ifndef SGL_RUNTIME_RT_CONSTRAIN_H
#define SGL_RUNTIME_RT_CONSTRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "constrain/constrain.h"
#include "runtime/rt.h"
#include "runtime/tokenizer.h"

/* Token i's bytes are tok_token_piece; end-of-generation ids are CV_EOG,
 * other control/unknown tokens CV_SPECIAL. 0 or a negative ERR_*. */
int rtc_vocab_new(const Tokenizer *t, CVocab **out, char *err, size_t errcap);

/* Compiles p's constraint (regex, json — an empty source is any JSON
 * value —, grammar as GBNF, ebnf as SGLang's EBNF, type). RT_CONSTRAINT_NONE
 * and CHOICES give *out = NULL and 0. Else 0, or a negative ERR_* with a
 * message that names the constraint kind and the problem. */
int rtc_compile(RtConstraintKind kind, const char *src, size_t len, CGrammar **out, char *err,
                size_t errcap);

/* rtc_compile with flags: RTC_ANY_WHITESPACE lets a JSON constraint take
 * any JSON whitespace between tokens (gen's any_whitespace); other kinds
 * refuse it by name. */
enum { RTC_ANY_WHITESPACE = 1 };
int rtc_compile_flags(RtConstraintKind kind, const char *src, size_t len, unsigned flags, CGrammar **out,
                      char *err, size_t errcap);

enum { RTC_SEGMENT_RANDOM = 1 };

/* Feeds text through the masks one token at a time (the canonical
 * tokenization, or a random valid one with RTC_SEGMENT_RANDOM) and then
 * asks whether end-of-generation is allowed. Returns 1 (accept), 0
 * (reject; *reject_at = byte offset where the first refused token starts,
 * or len when only the end was refused), or a negative ERR_*. */
int rtc_check(Tokenizer *t, CVocab *v, CGrammar *g, const char *text, size_t len, unsigned flags,
              uint64_t seed, size_t *reject_at, char *err, size_t errcap);

#endif
