/*
 * constrain/constrain.h — constraints compiled to token-level automata: the
 * one seam every other room uses for structured generation (LANGUAGE.md §6,
 * §9). A leaf room: it uses base/ and system libraries only, so the
 * compiler (constraint literals), the VM (constraints built at run time),
 * the runtime (token masks) and the server (constraints in requests) all
 * call it.
 *
 *   regex text ───── cg_compile_regex ──┐
 *   GBNF text ────── cg_compile_gbnf ───┤
 *   SGLang EBNF ──── cg_compile_ebnf ───┼──► CgBuilder ──cgb_build──► CGrammar
 *   JSON Schema ──── cg_compile_json ───┤   (expressions,              (immutable, shared,
 *   type / choices ─ cg_compile_type/.. ┘    rules, refs)               refcounted; one byte
 *                                                                       DFA per rule, calls)
 *   token bytes ──── cv_new ──► CVocab (bytes per token, byte trie, end ids)
 *
 *   CGrammar + CVocab ──cm_new──► CMatcher (one per request)
 *        cm_fill_mask ─► allowed-token bitmask (u32 words, bit i = token i)
 *        cm_accept_token / cm_accept_bytes ─► advance
 *        cm_forced ─► the run of tokens the mask leaves no choice about
 *
 * Invariants:
 *  - Exactness: a CGrammar accepts exactly the byte strings its source
 *    describes, and only valid UTF-8. A feature that cannot be honoured
 *    exactly (a schema keyword, a regex construct) fails compilation with a
 *    message naming it; it is never dropped or weakened. Annotation
 *    keywords of JSON Schema (title, description, ...) are ignored.
 *  - Soundness of masks: a token is allowed iff appending its bytes keeps
 *    the text a prefix of some accepted string; an end-of-generation token
 *    iff the text so far is accepted. Special tokens that do not end
 *    generation are never allowed. No reachable state has an empty mask
 *    (every live prefix extends to an accepted string: cgb_build prunes
 *    dead ends and fails on an empty language).
 *  - A CMatcher's state is its own: matchers over one CGrammar share only
 *    immutable tables and mask caches guarded for concurrent use.
 *
 * Ownership: CGrammar and CVocab are refcounted (cg_ref/cg_unref,
 * cv_ref/cv_unref); a CMatcher holds a reference to both. Error texts go
 * to the caller's buffer (err, errcap), always NUL-terminated.
 *
 * Threads: compilation is pure (any thread, no global state). A CGrammar
 * and a CVocab may be read by any number of threads at once; a CMatcher
 * belongs to one thread at a time (the engine's, for a request).
 *
 * Errors are base/err.h codes: ERR_CONSTRAINT (the constraint text is
 * invalid: bad syntax, undefined rule, empty language, a schema that no
 * value satisfies), ERR_UNSUPPORTED (a valid feature this room does not
 * enforce exactly; the message names it), ERR_LIMIT (past a cap below),
 * ERR_NOMEM, ERR_ARG.
 */
#ifndef SGL_CONSTRAIN_CONSTRAIN_H
#define SGL_CONSTRAIN_CONSTRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/strbuf.h"

typedef struct CGrammar CGrammar;   /* a compiled constraint */
typedef struct CVocab CVocab;       /* a tokenizer's vocabulary as bytes */
typedef struct CMatcher CMatcher;   /* one request's position */

/* ---- limits ------------------------------------------------------------- */

/* Caps past which compilation fails with ERR_LIMIT and a message that says
 * which cap. Zero fields take the defaults. */
typedef struct {
    int max_repeat;         /* largest count in {m,n}: default 1000 */
    int max_dfa_states;     /* per rule after minimisation: default 100000 */
    int max_rules;          /* default 100000 */
    int max_depth;          /* nesting of groups / schemas: default 100 */
} CgLimits;

/* ---- grammar IR: the builder -------------------------------------------- *
 *
 * Every front end lowers its syntax to these expressions; cgb_build turns
 * each rule into a minimised byte DFA whose edges are byte ranges or calls
 * of other rules. Expressions are handles into the builder (>= 0); a
 * builder call that fails (out of memory, bad argument) returns -1 and the
 * builder remembers the first failure, which cgb_build reports, so front
 * ends may chain calls without checking each.
 *
 * Characters are Unicode scalar values: cgb_class ranges are code points
 * and are lowered to UTF-8 byte sequences (surrogates never match); a
 * literal must be valid UTF-8. cgb_byte_range is for raw bytes.
 */

typedef struct CgBuilder CgBuilder;
typedef int32_t CgExpr;

enum { CG_INF = -1 };

typedef struct {
    uint32_t lo, hi;        /* inclusive code points */
} CgRange;

CgBuilder *cgb_new(const CgLimits *limits);     /* NULL when out of memory */
void cgb_free(CgBuilder *b);

CgExpr cgb_empty(CgBuilder *b);                 /* the empty string */
CgExpr cgb_nothing(CgBuilder *b);               /* matches nothing */
CgExpr cgb_lit(CgBuilder *b, const char *s, size_t n);
/* Any one code point in the ranges (unsorted, overlapping allowed);
 * negate = every scalar value not in them. */
CgExpr cgb_class(CgBuilder *b, const CgRange *r, int n, bool negate);
CgExpr cgb_byte_range(CgBuilder *b, uint8_t lo, uint8_t hi);
CgExpr cgb_seq(CgBuilder *b, const CgExpr *xs, int n);    /* n == 0: empty */
CgExpr cgb_alt(CgBuilder *b, const CgExpr *xs, int n);    /* n == 0: nothing */
CgExpr cgb_repeat(CgBuilder *b, CgExpr x, int min, int max); /* max CG_INF */
CgExpr cgb_seq2(CgBuilder *b, CgExpr x, CgExpr y);
CgExpr cgb_alt2(CgBuilder *b, CgExpr x, CgExpr y);

/* Rules: declare first (so rules can refer to each other, recursively),
 * define once. `name` is for messages and dumps (copied); names need not
 * be unique. Left recursion, direct or through nullable prefixes, is
 * allowed: cgb_build rewrites it. */
int cgb_rule(CgBuilder *b, const char *name);              /* rule index */
CgExpr cgb_ref(CgBuilder *b, int rule);
int cgb_define(CgBuilder *b, int rule, CgExpr body);       /* 0 or -1 */

/* A regex of the §9 subset as an expression of this builder (so a schema's
 * "pattern" or a grammar's regex terminal embeds one). Returns -1 with the
 * message (and the 0-based byte offset in *err_pos) in err. */
CgExpr cgb_regex(CgBuilder *b, const char *re, size_t n, int *err_pos, char *err, size_t errcap);

/* Compiles the rules reachable from `start` into *out (refcount 1). The
 * builder may be freed afterwards. Fails with ERR_CONSTRAINT for an
 * undefined rule or an empty language, ERR_LIMIT past a cap, ERR_NOMEM. */
int cgb_build(CgBuilder *b, int start, CGrammar **out, char *err, size_t errcap);

/* ---- compiled grammars -------------------------------------------------- */

/* The §9 regex subset (constrain/regex_syntax.h's syntax; the pattern
 * matches the whole output). *err_pos: 0-based byte offset of the problem. */
int cg_compile_regex(const char *re, size_t n, const CgLimits *lim, CGrammar **out,
                     int *err_pos, char *err, size_t errcap);

/* GBNF (llama.cpp's syntax; start rule `root`). *line, *col: 1-based. */
int cg_compile_gbnf(const char *src, size_t n, const CgLimits *lim, CGrammar **out,
                    int *line, int *col, char *err, size_t errcap);

/* The EBNF of SGLang's `ebnf` request field (XGrammar's dialect). */
int cg_compile_ebnf(const char *src, size_t n, const CgLimits *lim, CGrammar **out,
                    int *line, int *col, char *err, size_t errcap);

typedef struct {
    /* false (default): between JSON tokens, nothing or one space where
     * json.dumps puts one (after ':' and ','); true: any JSON whitespace. */
    bool any_whitespace;
    /* Optional "indent" style (a newline and this many spaces per level);
     * 0 = off. */
    int indent;
} CgJsonOptions;

/* A JSON Schema (draft 2020-12 and the common older forms) given as JSON
 * text. `opt` may be NULL. */
int cg_compile_json(const char *schema, size_t n, const CgJsonOptions *opt, const CgLimits *lim,
                    CGrammar **out, char *err, size_t errcap);

/* Any JSON value (json: true in a gen with no schema). */
int cg_compile_json_any(const CgJsonOptions *opt, CGrammar **out, char *err, size_t errcap);

/* gen(type: "int" | "float" | "bool") as SGLang writes them (LANGUAGE.md
 * §6); the VM converts the text. Unknown type: ERR_CONSTRAINT. */
int cg_compile_type(const char *type, CGrammar **out, char *err, size_t errcap);

/* gen(choices: [...]): exactly one of the strings. */
int cg_compile_choices(const char *const *choices, const size_t *lens, int n, CGrammar **out,
                       char *err, size_t errcap);

CGrammar *cg_ref(CGrammar *g);
void cg_unref(CGrammar *g);

/* Byte-level recognition without a vocabulary (tests, fuzzing, sgl check's
 * byte report): 1 when s[0..n) is in the language, 0 when not; *prefix_ok
 * (if not NULL) = whether it is a prefix of some string in the language. */
int cg_match(const CGrammar *g, const char *s, size_t n, bool *prefix_ok);

/* A compiled grammar as bytes and back (constrain/serial.c has the layout):
 * how the compiler stores a program's constraint literals in its .sglc.
 * cg_encode appends to *out: 0 or ERR_NOMEM. cg_decode trusts nothing: it
 * checks every count and index and proves the invariants the matcher relies
 * on before returning the grammar (refcount 1); ERR_FORMAT with a message
 * ("bad compiled constraint: ...") otherwise. */
int cg_encode(const CGrammar *g, StrBuf *out);
int cg_decode(const void *buf, size_t n, CGrammar **out, char *err, size_t errcap);

/* The rules as text, for tests and `sgl compile --disasm`. Malloc'd. */
char *cg_dump(const CGrammar *g);

/* ---- vocabularies ------------------------------------------------------- */

enum {
    CV_SPECIAL = 1 << 0,    /* control token: never allowed as text */
    CV_EOG = 1 << 1,        /* ends generation: allowed iff accepting */
};

/* n tokens; token i is bytes[i][0..lens[i]) (the raw bytes it decodes to:
 * the runtime has already undone byte-level BPE symbols, "▁" and <0xHH>),
 * flags[i] a CV_* set. Copies everything. */
int cv_new(int32_t n, const char *const *bytes, const size_t *lens, const uint8_t *flags,
           CVocab **out);
CVocab *cv_ref(CVocab *v);
void cv_unref(CVocab *v);
int32_t cv_size(const CVocab *v);
/* u32 words in a mask: ceil(n / 32) rounded up to even, so a mask can also
 * be read as u64 words (bit i = word i/64, bit i%64 on little-endian). */
size_t cv_mask_words(const CVocab *v);

/* A random tokenization of text[0..n): token ids whose bytes concatenate
 * to it, each cut chosen uniformly among the vocabulary tokens that fit
 * (for `sgl check --segment random` and completeness tests). Returns the
 * count written to ids (cap entries), or ERR_CONSTRAINT when the text
 * cannot be tokenized, ERR_LIMIT when cap is too small. */
int cv_random_segment(const CVocab *v, const char *text, size_t n, uint64_t seed, int32_t *ids,
                      int cap);

/* ---- matchers: one request's position in a grammar ---------------------- */

int cm_new(CGrammar *g, CVocab *v, CMatcher **out);
void cm_free(CMatcher *m);

/* Writes the allowed-token set into mask[0..cv_mask_words) (set bit =
 * allowed; padding bits clear). Returns the number of allowed tokens
 * (>= 1 while not finished), or a negative error. */
int cm_fill_mask(CMatcher *m, uint32_t *mask);

/* Advances by one token. 0, or ERR_CONSTRAINT when the mask would not
 * allow it (the state is then unchanged). Accepting an end-of-generation
 * token finishes the matcher. */
int cm_accept_token(CMatcher *m, int32_t id);

/* Advances by raw bytes (no vocabulary involved). 0, or ERR_CONSTRAINT
 * with the state unchanged and *bad_at (if not NULL) the offset of the
 * first byte that cannot follow. */
int cm_accept_bytes(CMatcher *m, const char *s, size_t n, size_t *bad_at);

bool cm_can_end(const CMatcher *m);        /* the text so far is accepted */
bool cm_is_finished(const CMatcher *m);    /* an end token was accepted, or
                                              nothing can follow */

/* Jump-forward: while the mask allows exactly one token and it is not an
 * end-of-generation token, accepts it and writes it to ids (at most cap).
 * Returns the count (0 when the next token is a real choice). */
int cm_forced(CMatcher *m, int32_t *ids, int cap);

/* Takes back the last n accepted tokens (n <= cm_history(m)); for a
 * request that is retracted and replays, and for speculative use. */
int cm_rollback(CMatcher *m, int n);
int cm_history(const CMatcher *m);

#endif
