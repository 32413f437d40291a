/*
 * tests/unit/test_constrain_match.c — the token side of constrain/: the
 * vocabulary trie (cv_*), masks, acceptance, jump-forward and rollback of
 * matchers (cm_*), cg_match.
 *
 *   - masks equal a brute-force reference (every token's bytes tried with
 *     cm_accept_token on the same state, then rolled back) on small
 *     vocabularies and on the default model's;
 *   - soundness: random walks through the masks (default vocabulary, Llama
 *     3's 128k) end in strings PCRE2 matches entirely / jansson parses /
 *     a reference recognizer accepts; no reached state has an empty mask;
 *   - completeness: valid strings in canonical (tok_encode) and random
 *     (cv_random_segment) tokenizations are accepted token by token, end
 *     allowed at the end;
 *   - rollback restores masks exactly; cm_forced; matchers on one grammar
 *     in several threads give the masks one alone gives.
 *
 * Tests that need models/ or build/vocab skip when the files are absent.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <criterion/criterion.h>
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "constrain/constrain.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"

#define MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define LLAMA3 "build/vocab/ggml-vocab-llama-bpe.gguf"

/* ---- helpers ------------------------------------------------------------ */

static uint64_t rng_state;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

typedef struct {
    Tokenizer *tok;     /* NULL for hand-made vocabularies */
    CVocab *v;
    int32_t n;
    size_t words;
    char **bytes;       /* hand-made: token bytes (NUL-terminated copies) */
    size_t *lens;
    uint8_t *flags;
} Voc;

static Voc voc_from_strings(const char *const *toks, int n, const uint8_t *flags)
{
    Voc vc = { 0 };
    vc.n = n;
    vc.bytes = calloc((size_t)n, sizeof *vc.bytes);
    vc.lens = calloc((size_t)n, sizeof *vc.lens);
    vc.flags = calloc((size_t)n, 1);
    for (int i = 0; i < n; i++) {
        vc.bytes[i] = strdup(toks[i]);
        vc.lens[i] = strlen(toks[i]);
        vc.flags[i] = flags ? flags[i] : 0;
    }
    int rc = cv_new(n, (const char *const *)vc.bytes, vc.lens, vc.flags, &vc.v);
    cr_assert_eq(rc, 0, "cv_new: %d", rc);
    vc.words = cv_mask_words(vc.v);
    return vc;
}

static Voc voc_from_gguf(const char *path)
{
    if (access(path, R_OK) != 0)
        cr_skip_test("%s absent (make model / make vocab): skipped", path);
    char err[256] = "";
    GgufFile *f = gguf_open(path, err, sizeof err);
    cr_assert_not_null(f, "gguf_open: %s", err);
    Voc vc = { 0 };
    int rc = tok_load_gguf(f, &vc.tok, err, sizeof err);
    gguf_close(f);
    cr_assert_eq(rc, 0, "tok_load_gguf(%s): %s", path, err);
    vc.n = tok_vocab_size(vc.tok);
    const char **bytes = malloc((size_t)vc.n * sizeof *bytes);
    vc.lens = malloc((size_t)vc.n * sizeof *vc.lens);
    vc.flags = malloc((size_t)vc.n);
    for (int32_t i = 0; i < vc.n; i++) {
        bytes[i] = tok_token_piece(vc.tok, i, &vc.lens[i]);
        vc.flags[i] = (uint8_t)((tok_is_special(vc.tok, i) ? CV_SPECIAL : 0) | (tok_is_eog(vc.tok, i) ? CV_EOG : 0));
    }
    rc = cv_new(vc.n, bytes, vc.lens, vc.flags, &vc.v);
    free(bytes);
    cr_assert_eq(rc, 0);
    vc.words = cv_mask_words(vc.v);
    return vc;
}

static const char *voc_piece(const Voc *vc, int32_t id, size_t *len)
{
    if (vc->tok)
        return tok_token_piece(vc->tok, id, len);
    *len = vc->lens[id];
    return vc->bytes[id];
}

static void voc_free(Voc *vc)
{
    cv_unref(vc->v);
    if (vc->tok)
        tok_free(vc->tok);
    if (vc->bytes)
        for (int i = 0; i < vc->n; i++)
            free(vc->bytes[i]);
    free(vc->bytes);
    free(vc->lens);
    free(vc->flags);
}

static CGrammar *regex(const char *re)
{
    CGrammar *g = NULL;
    char err[256] = "";
    int pos = 0;
    int rc = cg_compile_regex(re, strlen(re), NULL, &g, &pos, err, sizeof err);
    cr_assert_eq(rc, 0, "cg_compile_regex(%s): %s at %d", re, err, pos);
    return g;
}

static bool bit(const uint32_t *mask, int32_t t) { return mask[t >> 5] >> (t & 31) & 1; }

/* PCRE2 full match (partial = "is a prefix of a match"). */
static bool pcre_full(const char *re, const char *s, size_t n, bool partial)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                     &ec, &eo, NULL);
    cr_assert_not_null(code, "pcre2_compile(%s)", re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
    int rc = pcre2_match(code, (PCRE2_SPTR)s, n, 0, partial ? PCRE2_PARTIAL_HARD : 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(code);
    return rc >= 0 || (partial && rc == PCRE2_ERROR_PARTIAL);
}

/* ---- grammars built with the builder ------------------------------------ */

/* JSON values (recursive: object and array call value). */
static CGrammar *json_grammar(void)
{
    char err[256] = "";
    CgBuilder *b = cgb_new(NULL);
    int value = cgb_rule(b, "value"), object = cgb_rule(b, "object"), array = cgb_rule(b, "array");
    int string = cgb_rule(b, "string");
    CgExpr ws = cgb_repeat(b, cgb_lit(b, " ", 1), 0, 1);
    /* \u escapes of surrogates are left out: jansson (the reference) refuses them */
    const char *esc_re = "[\"\\\\/bfnrt]|u([0-9a-cA-CefEF][0-9a-fA-F]{3}|[dD][0-7][0-9a-fA-F]{2})";
    CgRange plain[] = { { 0x20, 0x21 }, { 0x23, 0x5b }, { 0x5d, 0x10ffff } };
    CgExpr esc = cgb_seq2(b, cgb_lit(b, "\\", 1), cgb_regex(b, esc_re, strlen(esc_re), NULL, err, sizeof err));
    CgExpr ch = cgb_alt2(b, cgb_class(b, plain, 3, false), esc);
    cgb_define(b, string, cgb_seq(b, (CgExpr[]){ cgb_lit(b, "\"", 1), cgb_repeat(b, ch, 0, CG_INF), cgb_lit(b, "\"", 1) }, 3));
    const char *num = "-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,4})?";
    CgExpr number = cgb_regex(b, num, strlen(num), NULL, err, sizeof err);
    CgExpr member = cgb_seq(b, (CgExpr[]){ cgb_ref(b, string), cgb_lit(b, ":", 1), ws, cgb_ref(b, value) }, 4);
    CgExpr sep = cgb_seq2(b, cgb_lit(b, ",", 1), ws);
    CgExpr members = cgb_seq2(b, member, cgb_repeat(b, cgb_seq2(b, sep, member), 0, CG_INF));
    cgb_define(b, object, cgb_seq(b, (CgExpr[]){ cgb_lit(b, "{", 1), cgb_repeat(b, members, 0, 1), cgb_lit(b, "}", 1) }, 3));
    CgExpr elems = cgb_seq2(b, cgb_ref(b, value), cgb_repeat(b, cgb_seq2(b, sep, cgb_ref(b, value)), 0, CG_INF));
    cgb_define(b, array, cgb_seq(b, (CgExpr[]){ cgb_lit(b, "[", 1), cgb_repeat(b, elems, 0, 1), cgb_lit(b, "]", 1) }, 3));
    CgExpr alts[] = { cgb_ref(b, object), cgb_ref(b, array), cgb_ref(b, string), number,
                      cgb_lit(b, "true", 4), cgb_lit(b, "false", 5), cgb_lit(b, "null", 4) };
    cgb_define(b, value, cgb_alt(b, alts, 7));
    CGrammar *g = NULL;
    int rc = cgb_build(b, value, &g, err, sizeof err);
    cgb_free(b);
    cr_assert_eq(rc, 0, "json grammar: %s", err);
    return g;
}

static bool json_ok(const char *s, size_t n)
{
    json_error_t e;
    json_t *j = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!j)
        return false;
    json_decref(j);
    return true;
}

/* Nested lists: list ::= "[" (item ("," item)*)? "]" ; item ::= [a-z]{1,3} | list
 * (recursive, so the rules stay separate; used with small vocabularies
 * whose tokens cross rule boundaries: "],[" ...). */
static CGrammar *list_grammar(void)
{
    char err[256] = "";
    CgBuilder *b = cgb_new(NULL);
    int list = cgb_rule(b, "list"), item = cgb_rule(b, "item");
    CgExpr word = cgb_regex(b, "[a-z]{1,3}", 10, NULL, err, sizeof err);
    cgb_define(b, item, cgb_alt2(b, word, cgb_ref(b, list)));
    CgExpr items = cgb_seq2(b, cgb_ref(b, item), cgb_repeat(b, cgb_seq2(b, cgb_lit(b, ",", 1), cgb_ref(b, item)), 0, CG_INF));
    cgb_define(b, list, cgb_seq(b, (CgExpr[]){ cgb_lit(b, "[", 1), cgb_repeat(b, items, 0, 1), cgb_lit(b, "]", 1) }, 3));
    CGrammar *g = NULL;
    int rc = cgb_build(b, list, &g, err, sizeof err);
    cgb_free(b);
    cr_assert_eq(rc, 0, "list grammar: %s", err);
    return g;
}

/* The same language, right-recursive: items ::= item | item "," items, so
 * every item but the last is a tail call (matcher.c pushes no frame). */
static CGrammar *list_grammar_right(void)
{
    char err[256] = "";
    CgBuilder *b = cgb_new(NULL);
    int list = cgb_rule(b, "list"), item = cgb_rule(b, "item"), items = cgb_rule(b, "items");
    CgExpr word = cgb_regex(b, "[a-z]{1,3}", 10, NULL, err, sizeof err);
    cgb_define(b, item, cgb_alt2(b, word, cgb_ref(b, list)));
    cgb_define(b, items, cgb_alt2(b, cgb_ref(b, item), cgb_seq(b, (CgExpr[]){ cgb_ref(b, item), cgb_lit(b, ",", 1), cgb_ref(b, items) }, 3)));
    cgb_define(b, list, cgb_seq(b, (CgExpr[]){ cgb_lit(b, "[", 1), cgb_repeat(b, cgb_ref(b, items), 0, 1), cgb_lit(b, "]", 1) }, 3));
    CGrammar *g = NULL;
    int rc = cgb_build(b, list, &g, err, sizeof err);
    cgb_free(b);
    cr_assert_eq(rc, 0, "right-recursive list grammar: %s", err);
    return g;
}

static bool ref_list(const char *s, size_t n, size_t *i);
static bool ref_item(const char *s, size_t n, size_t *i)
{
    size_t k = 0;
    while (*i < n && s[*i] >= 'a' && s[*i] <= 'z' && k < 3)
        (*i)++, k++;
    if (k)
        return true;
    return ref_list(s, n, i);
}
static bool ref_list(const char *s, size_t n, size_t *i)
{
    if (*i >= n || s[*i] != '[')
        return false;
    (*i)++;
    if (*i < n && s[*i] == ']')
        return (*i)++, true;
    for (;;) {
        if (!ref_item(s, n, i))
            return false;
        if (*i < n && s[*i] == ',') {
            (*i)++;
            continue;
        }
        if (*i < n && s[*i] == ']')
            return (*i)++, true;
        return false;
    }
}
static bool list_ok(const char *s, size_t n)
{
    size_t i = 0;
    return ref_list(s, n, &i) && i == n;
}

/* ---- brute force -------------------------------------------------------- */

/* The mask as the definition says: token t allowed iff accepting it
 * succeeds (text tokens: its bytes keep the text a live prefix; end tokens:
 * the text is accepted). Compares with cm_fill_mask. */
static void check_brute(CMatcher *m, const Voc *vc, uint32_t *mask, const char *where)
{
    int c = cm_fill_mask(m, mask);
    cr_assert_geq(c, 1, "%s: empty mask", where);
    int count = 0;
    int h = cm_history(m);
    for (int32_t t = 0; t < vc->n; t++) {
        int rc = cm_accept_token(m, t);
        bool ok = rc == 0;
        if (ok) {
            cr_assert_eq(cm_rollback(m, 1), 0);
            count++;
        }
        cr_assert_eq(cm_history(m), h);
        if (ok != bit(mask, t)) {
            size_t len;
            const char *p = voc_piece(vc, t, &len);
            cr_assert_fail("%s: token %d '%.*s': mask says %d, accepting says %d", where, t, (int)len, p, bit(mask, t), ok);
        }
    }
    cr_assert_eq(c, count, "%s: count %d, bits %d", where, c, count);
    /* padding bits are clear */
    for (size_t k = (size_t)vc->n; k < vc->words * 32; k++)
        cr_assert(!bit(mask, (int32_t)k), "%s: padding bit %zu set", where, k);
}

/* A random walk through the masks: random allowed tokens, an end token
 * with probability 1/p_end when allowed. Writes the text; returns true if
 * it ended (an end token was accepted). Checks against brute force at each
 * step when `brute`. */
static bool random_walk(CMatcher *m, const Voc *vc, uint32_t *mask, int max_steps, int p_end, bool brute, char *text,
                        size_t cap, size_t *len, const char *label)
{
    *len = 0;
    int32_t *allowed = malloc((size_t)vc->n * sizeof *allowed);
    bool ended = false;
    for (int step = 0; step < max_steps; step++) {
        char where[128];
        snprintf(where, sizeof where, "%s step %d after '%.*s'", label, step, (int)(*len < 60 ? *len : 60), text);
        if (brute)
            check_brute(m, vc, mask, where);
        int c = cm_fill_mask(m, mask);
        cr_assert_geq(c, 1, "%s: empty mask", where);
        int na = 0;
        int32_t eog = -1;
        for (size_t w = 0; w < vc->words; w++)
            for (uint32_t x = mask[w]; x; x &= x - 1) {
                int32_t t = (int32_t)(w * 32 + (size_t)__builtin_ctz(x));
                if (vc->flags[t] & CV_EOG)
                    eog = t;
                else
                    allowed[na++] = t;
            }
        cr_assert_eq(na + (eog >= 0 ? 1 : 0) <= c, true);
        cr_assert_eq(eog >= 0, cm_can_end(m), "%s: end allowed %d but can_end %d", where, eog >= 0, cm_can_end(m));
        for (int32_t t = 0; t < vc->n; t++)
            if ((vc->flags[t] & CV_SPECIAL) && !(vc->flags[t] & CV_EOG))
                cr_assert(!bit(mask, t), "%s: special token %d allowed", where, t);
        if (eog >= 0 && (na == 0 || rnd((uint32_t)p_end) == 0)) {
            cr_assert_eq(cm_accept_token(m, eog), 0);
            cr_assert(cm_is_finished(m));
            cr_assert_eq(cm_fill_mask(m, mask), 0);
            ended = true;
            break;
        }
        int32_t t = allowed[rnd((uint32_t)na)];
        cr_assert_eq(cm_accept_token(m, t), 0, "%s: allowed token %d refused", where, t);
        size_t l;
        const char *p = voc_piece(vc, t, &l);
        cr_assert_lt(*len + l, cap);
        memcpy(text + *len, p, l);
        *len += l;
        text[*len] = 0;
    }
    free(allowed);
    return ended;
}

/* ---- the vocabulary ----------------------------------------------------- */

Test(constrain_vocab, sizes_specials_and_duplicates)
{
    const char *toks[] = { "a", "ab", "abc", "b", "<s>", "</s>", "", "ab", "zz" };
    uint8_t flags[] = { 0, 0, 0, 0, CV_SPECIAL, CV_SPECIAL | CV_EOG, 0, 0, 0 };
    Voc vc = voc_from_strings(toks, 9, flags);
    cr_assert_eq(cv_size(vc.v), 9);
    cr_assert_eq(cv_mask_words(vc.v), 2, "masks are an even number of words");
    CGrammar *g = regex("(a|b|z)*");
    CMatcher *m;
    cr_assert_eq(cm_new(g, vc.v, &m), 0);
    uint32_t mask[2];
    int c = cm_fill_mask(m, mask);
    /* a ab b ab(dup) zz + </s> (accepting); not abc (c), <s>, "" */
    cr_assert_eq(c, 6, "count %d", c);
    cr_assert(!bit(mask, 2));
    cr_assert(bit(mask, 7) && bit(mask, 1), "both tokens spelled ab");
    cr_assert(!bit(mask, 4) && !bit(mask, 6));
    cr_assert(bit(mask, 5));
    cr_assert_eq(cm_accept_token(m, 4), ERR_CONSTRAINT, "a special token is never text");
    cr_assert_eq(cm_accept_token(m, 6), ERR_CONSTRAINT, "an empty token is never allowed");
    cr_assert_eq(cm_accept_token(m, 9), ERR_VOCAB);
    cm_free(m);
    cg_unref(g);
    voc_free(&vc);
}

Test(constrain_vocab, random_segment)
{
    const char *toks[] = { "a", "b", "ab", "abc", "c", "bc", "<eos>" };
    uint8_t flags[] = { 0, 0, 0, 0, 0, 0, CV_EOG };
    Voc vc = voc_from_strings(toks, 7, flags);
    int32_t ids[16];
    int seen_ab = 0, seen_abc = 0;
    for (uint64_t seed = 1; seed < 200; seed++) {
        int n = cv_random_segment(vc.v, "abcab", 5, seed, ids, 16);
        cr_assert_gt(n, 0);
        char buf[16];
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            cr_assert_neq(ids[i], 6, "end tokens are not text");
            memcpy(buf + at, toks[ids[i]], strlen(toks[ids[i]]));
            at += strlen(toks[ids[i]]);
        }
        cr_assert_eq(at, 5);
        cr_assert_eq(memcmp(buf, "abcab", 5), 0);
        seen_ab += ids[0] == 2;
        seen_abc += ids[0] == 3;
    }
    cr_assert(seen_ab > 20 && seen_abc > 20, "cuts are random: ab %d abc %d", seen_ab, seen_abc);
    cr_assert_eq(cv_random_segment(vc.v, "abd", 3, 1, ids, 16), ERR_CONSTRAINT);
    cr_assert_eq(cv_random_segment(vc.v, "aaaa", 4, 1, ids, 2), ERR_LIMIT);
    cr_assert_eq(cv_random_segment(vc.v, "", 0, 1, ids, 2), 0);
    voc_free(&vc);
}

/* ---- masks against brute force ------------------------------------------ */

static const char *small_toks[] = { "[", "]", ",", "a", "b", "ab", "abc", "abcd", "[a", "],", "]]", "],[", "a]", "a,",
                                    "[[", ",b", "x", "[]", "[],", "a],[b", "<eos>", "<pad>", "é", "\xc3", "\xa9",
                                    "\"", "{\"", "\":", "\"}", "1", "12", "0.", ".5", "-", "true", "tr", "ue", "null",
                                    " ", ", ", ": ", "{}", "[\"", "\"]", "\\", "\\n", "u00e9", "\\u", "a\"" };

/* The tokens above plus every printable ASCII character alone (so that
 * every live prefix can be continued token by token, as with a real
 * byte-level vocabulary). */
static Voc small_vocab(void)
{
    int nt = (int)(sizeof small_toks / sizeof small_toks[0]);
    const char *toks[256];
    char singles[95][2];
    int n = 0;
    for (int i = 0; i < nt; i++)
        toks[n++] = small_toks[i];
    for (int c = 0x20; c < 0x7f; c++) {
        singles[c - 0x20][0] = (char)c;
        singles[c - 0x20][1] = 0;
        toks[n++] = singles[c - 0x20];
    }
    uint8_t flags[256] = { 0 };
    for (int i = 0; i < n; i++) {
        if (!strcmp(toks[i], "<eos>"))
            flags[i] = CV_EOG | CV_SPECIAL;
        if (!strcmp(toks[i], "<pad>"))
            flags[i] = CV_SPECIAL;
    }
    return voc_from_strings(toks, n, flags);
}

static void brute_lists(CGrammar *g)
{
    Voc vc = small_vocab();
    uint32_t mask[8];
    char text[4096];
    rng_state = 12345;
    for (int walk = 0; walk < 200; walk++) {
        CMatcher *m;
        cr_assert_eq(cm_new(g, vc.v, &m), 0);
        size_t len;
        bool ended = random_walk(m, &vc, mask, 40, 4, true, text, sizeof text, &len, "lists");
        bool prefix;
        int full = cg_match(g, text, len, &prefix);
        cr_assert(prefix, "walk text '%s' is not a prefix", text);
        if (ended) {
            cr_assert(list_ok(text, len), "walk ended on '%s', which the reference rejects", text);
            cr_assert_eq(full, 1);
        }
        cm_free(m);
    }
    cg_unref(g);
    voc_free(&vc);
}

Test(constrain_mask, brute_force_nested_lists) { brute_lists(list_grammar()); }
Test(constrain_mask, brute_force_right_recursive_lists) { brute_lists(list_grammar_right()); }

Test(constrain_mask, brute_force_json_small_vocab)
{
    Voc vc = small_vocab();
    CGrammar *g = json_grammar();
    uint32_t mask[8];
    char text[4096];
    rng_state = 999;
    for (int walk = 0; walk < 200; walk++) {
        CMatcher *m;
        cr_assert_eq(cm_new(g, vc.v, &m), 0);
        size_t len;
        bool ended = random_walk(m, &vc, mask, 40, 3, true, text, sizeof text, &len, "json");
        if (ended)
            cr_assert(json_ok(text, len), "walk ended on '%s', which jansson rejects", text);
        cm_free(m);
    }
    cg_unref(g);
    voc_free(&vc);
}

Test(constrain_mask, brute_force_regexes_small_vocab)
{
    Voc vc = small_vocab();
    const char *res[] = { "(ab|a)*", "\\[(a|b)+\\]", "[a-c]{2,5}", "é+|x", "(tr|true|null)( |, )?", "[^a]*",
                          "\\{\"a\": (1|12|-0\\.5)\\}" };
    uint32_t mask[8];
    char text[4096];
    rng_state = 7;
    for (size_t r = 0; r < sizeof res / sizeof res[0]; r++) {
        CGrammar *g = regex(res[r]);
        for (int walk = 0; walk < 40; walk++) {
            CMatcher *m;
            cr_assert_eq(cm_new(g, vc.v, &m), 0);
            size_t len;
            bool ended = random_walk(m, &vc, mask, 20, 3, true, text, sizeof text, &len, res[r]);
            if (ended)
                cr_assert(pcre_full(res[r], text, len, false), "%s: walk ended on '%s'", res[r], text);
            else
                cr_assert(pcre_full(res[r], text, len, true), "%s: '%s' is not a prefix", res[r], text);
            cm_free(m);
        }
        cg_unref(g);
    }
    voc_free(&vc);
}

static const char *json_prefixes[] = { "[{\"a\": [", "{\"k\": {\"x\": \"", "[", "{\"list\": [[1, {\"q\": " };

/* Real vocabularies: brute force at every step of a few walks (every
 * token tried at each step), through grammars whose tokens cross rule
 * boundaries (the context-dependent part of the mask cache). */
static void brute_real(const char *path, int walks, int steps)
{
    Voc vc = voc_from_gguf(path);
    uint32_t *mask = malloc(vc.words * sizeof *mask);
    char text[8192];
    rng_state = 4242;
    CGrammar *gs[] = { regex("[A-Z][a-z]+( [a-z]+){0,3}\\."), json_grammar(), list_grammar(), list_grammar_right() };
    const char *names[] = { "sentence", "json", "lists", "right-recursive lists" };
    for (int k = 0; k < 4; k++) {
        for (int walk = 0; walk < walks; walk++) {
            CMatcher *m;
            cr_assert_eq(cm_new(gs[k], vc.v, &m), 0);
            size_t len;
            /* start the JSON walks inside objects and arrays, where tokens
             * like "}, or ]] close several rules */
            const char *pre = k == 1 ? json_prefixes[walk % 4] : "";
            cr_assert_eq(cm_accept_bytes(m, pre, strlen(pre), NULL), 0);
            random_walk(m, &vc, mask, steps, 6, true, text, sizeof text, &len, names[k]);
            fprintf(stderr, "brute %s: %d steps, '%.*s'\n", names[k], cm_history(m), (int)(len < 80 ? len : 80), text);
            cm_free(m);
        }
        cg_unref(gs[k]);
    }
    free(mask);
    voc_free(&vc);
}

Test(constrain_mask, brute_force_default_vocab, .timeout = 600) { brute_real(MODEL, 3, 25); }
Test(constrain_mask, brute_force_llama3_vocab, .timeout = 600) { brute_real(LLAMA3, 2, 15); }

/* ---- soundness on real vocabularies ------------------------------------- */

static const char *walk_regexes[] = {
    "[a-zA-Z0-9._%+-]{1,20}@[a-zA-Z0-9-]{1,20}\\.[a-z]{2,4}",
    "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?(Z|[+-]\\d{2}:\\d{2})",
    "((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)",
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "(yes|no|maybe|I don't know)",
    "-?(0|[1-9]\\d{0,8})(\\.\\d{1,6})?([eE][+-]?\\d{1,3})?",
    "[A-Z][a-z]{0,12}( [a-z]{1,12}){0,8}[.!?]",
    "\\{\"name\": \"[^\"\\\\\\x00-\\x1f]{1,30}\", \"age\": \\d{1,3}\\}",
    "[^\\n]{0,60}\\n",
    "(\\w+\\s?){1,6}",
    "[αβγδ]{1,5}(日本|中文)?[\\x{1F600}-\\x{1F64F}]?",
    ".{0,20}",
};

static void soundness_regexes(const char *path, int walks)
{
    Voc vc = voc_from_gguf(path);
    uint32_t *mask = malloc(vc.words * sizeof *mask);
    char text[16384];
    rng_state = 0xC0FFEE;
    for (size_t r = 0; r < sizeof walk_regexes / sizeof walk_regexes[0]; r++) {
        const char *re = walk_regexes[r];
        CGrammar *g = regex(re);
        int ended_n = 0;
        for (int w = 0; w < walks; w++) {
            CMatcher *m;
            cr_assert_eq(cm_new(g, vc.v, &m), 0);
            size_t len;
            bool ended = random_walk(m, &vc, mask, 200, 3, false, text, sizeof text, &len, re);
            if (ended) {
                ended_n++;
                cr_assert(pcre_full(re, text, len, false), "%s: walk ended on '%s', which PCRE2 rejects", re, text);
                cr_assert_eq(cg_match(g, text, len, NULL), 1);
            } else
                cr_assert(pcre_full(re, text, len, true), "%s: '%s' is not a prefix", re, text);
            cm_free(m);
        }
        cr_assert_gt(ended_n, 0, "%s: no walk ended", re);
        fprintf(stderr, "%s: %d of %d walks ended\n", re, ended_n, walks);
        cg_unref(g);
    }
    free(mask);
    voc_free(&vc);
}

Test(constrain_sound, regexes_default_vocab, .timeout = 600) { soundness_regexes(MODEL, 25); }
Test(constrain_sound, regexes_llama3_vocab, .timeout = 600) { soundness_regexes(LLAMA3, 15); }

static void soundness_json(const char *path, int walks)
{
    Voc vc = voc_from_gguf(path);
    uint32_t *mask = malloc(vc.words * sizeof *mask);
    char *text = malloc(1 << 16);
    rng_state = 0xBEEF;
    CGrammar *g = json_grammar();
    int ended_n = 0;
    for (int w = 0; w < walks; w++) {
        CMatcher *m;
        cr_assert_eq(cm_new(g, vc.v, &m), 0);
        const char *pre = w % 5 == 4 ? "" : json_prefixes[w % 5];
        size_t plen = strlen(pre);
        cr_assert_eq(cm_accept_bytes(m, pre, plen, NULL), 0);
        memcpy(text, pre, plen);
        size_t len;
        bool ended = random_walk(m, &vc, mask, 150, 8, false, text + plen, (1 << 16) - plen, &len, "json");
        len += plen;
        bool prefix;
        int full = cg_match(g, text, len, &prefix);
        cr_assert(prefix);
        if (ended) {
            ended_n++;
            cr_assert_eq(full, 1);
            cr_assert(json_ok(text, len), "walk ended on '%s', which jansson rejects", text);
        }
        cm_free(m);
    }
    cr_assert_gt(ended_n, 0);
    cg_unref(g);
    free(text);
    free(mask);
    voc_free(&vc);
}

Test(constrain_sound, json_default_vocab, .timeout = 600) { soundness_json(MODEL, 40); }
Test(constrain_sound, json_llama3_vocab, .timeout = 600) { soundness_json(LLAMA3, 25); }

/* ---- completeness ------------------------------------------------------- */

typedef struct {
    const char *re;     /* NULL: the JSON grammar */
    const char *text;
} Instance;

static const Instance instances[] = {
    { "[a-zA-Z0-9._%+-]{1,20}@[a-zA-Z0-9-]{1,20}\\.[a-z]{2,4}", "john.doe@example.com" },
    { "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?(Z|[+-]\\d{2}:\\d{2})", "1999-12-31T23:59:59.999+01:00" },
    { "(yes|no|maybe|I don't know)", "I don't know" },
    { "[A-Z][a-z]{0,12}( [a-z]{1,12}){0,8}[.!?]", "The quick brown fox jumps over the lazy dog." },
    { "[^\\n]{0,60}\\n", "Déjà vu: naïve café, 日本語 and emoji 😀 too.\n" },
    { ".{0,80}", "   leading spaces and\ttabs, \"quotes\" and \\backslashes\\" },
    { NULL, "{\"a\": [1, 2.5, -3, true, null], \"b\": {\"c\": \"d\\n\\u00e9 ü\"}, \"e\": []}" },
    { NULL, "[{\"id\": 1, \"tags\": [\"x\", \"y\"]}, {\"id\": 2, \"tags\": [[[]]]}]" },
    { NULL, "\"just a string with \\\"escapes\\\"\"" },
};

static void feed(CMatcher *m, const Voc *vc, uint32_t *mask, const int32_t *ids, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        int c = cm_fill_mask(m, mask);
        cr_assert_geq(c, 1, "%s: empty mask at token %d", what, i);
        cr_assert(bit(mask, ids[i]), "%s: token %d (id %d) not in the mask", what, i, ids[i]);
        cr_assert_eq(cm_accept_token(m, ids[i]), 0, "%s: token %d refused", what, i);
    }
    cr_assert(cm_can_end(m), "%s: end not allowed at the end", what);
    cm_fill_mask(m, mask);
    int32_t eos = -1;
    for (int32_t t = 0; t < vc->n; t++)
        if (vc->flags[t] & CV_EOG) {
            cr_assert(bit(mask, t), "%s: end token %d not in the final mask", what, t);
            eos = t;
        }
    if (eos >= 0) {
        cr_assert_eq(cm_accept_token(m, eos), 0);
        cr_assert(cm_is_finished(m));
    }
}

static void completeness(const char *path)
{
    Voc vc = voc_from_gguf(path);
    uint32_t *mask = malloc(vc.words * sizeof *mask);
    CGrammar *json = json_grammar();
    for (size_t k = 0; k < sizeof instances / sizeof instances[0]; k++) {
        const Instance *in = &instances[k];
        CGrammar *g = in->re ? regex(in->re) : cg_ref(json);
        size_t n = strlen(in->text);
        if (in->re)
            cr_assert(pcre_full(in->re, in->text, n, false), "instance %zu is valid", k);
        cr_assert_eq(cg_match(g, in->text, n, NULL), 1, "cg_match on instance %zu", k);
        TokIds ids = { 0 };
        cr_assert_eq(tok_encode(vc.tok, in->text, n, 0, &ids), 0);
        CMatcher *m;
        cr_assert_eq(cm_new(g, vc.v, &m), 0);
        feed(m, &vc, mask, ids.ids, (int)ids.n, in->text);
        cm_free(m);
        tok_ids_free(&ids);
        int32_t seg[4096];
        for (uint64_t seed = 1; seed <= 20; seed++) {
            int c = cv_random_segment(vc.v, in->text, n, seed, seg, 4096);
            cr_assert_gt(c, 0);
            cr_assert_eq(cm_new(g, vc.v, &m), 0);
            feed(m, &vc, mask, seg, c, in->text);
            cm_free(m);
        }
        cg_unref(g);
    }
    cg_unref(json);
    free(mask);
    voc_free(&vc);
}

Test(constrain_complete, default_vocab, .timeout = 600) { completeness(MODEL); }
Test(constrain_complete, llama3_vocab, .timeout = 600) { completeness(LLAMA3); }

Test(constrain_complete, accept_bytes_and_refusals)
{
    CGrammar *g = regex("ab(c|d)e");
    const char *toks[] = { "a", "b", "abc", "e", "x", "<eos>" };
    uint8_t flags[] = { 0, 0, 0, 0, 0, CV_EOG };
    Voc vc = voc_from_strings(toks, 6, flags);
    CMatcher *m;
    cr_assert_eq(cm_new(g, vc.v, &m), 0);
    size_t bad = 99;
    cr_assert_eq(cm_accept_bytes(m, "abx", 3, &bad), ERR_CONSTRAINT);
    cr_assert_eq(bad, 2);
    cr_assert_eq(cm_history(m), 0, "a refused call leaves no history");
    cr_assert_eq(cm_accept_token(m, 5), ERR_CONSTRAINT, "end before the text is accepted");
    cr_assert_eq(cm_accept_bytes(m, "ab", 2, NULL), 0);
    cr_assert(!cm_can_end(m));
    cr_assert_eq(cm_accept_token(m, 4), ERR_CONSTRAINT);
    cr_assert_eq(cm_accept_bytes(m, "d", 1, NULL), 0);
    cr_assert_eq(cm_accept_token(m, 3), 0);
    cr_assert(cm_can_end(m));
    cr_assert(cm_is_finished(m), "nothing can follow but the end");
    uint32_t mask[2];
    cr_assert_eq(cm_fill_mask(m, mask), 1);
    cr_assert(bit(mask, 5));
    cr_assert_eq(cm_accept_token(m, 5), 0);
    cr_assert_eq(cm_fill_mask(m, mask), 0);
    cr_assert_eq(cm_accept_token(m, 0), ERR_CONSTRAINT);
    cm_free(m);
    cg_unref(g);
    voc_free(&vc);
}

Test(constrain_complete, cg_match)
{
    CGrammar *g = list_grammar();
    bool p;
    cr_assert_eq(cg_match(g, "[a,[bc],[]]", 11, &p), 1);
    cr_assert(p);
    cr_assert_eq(cg_match(g, "[a,[bc]", 7, &p), 0);
    cr_assert(p);
    cr_assert_eq(cg_match(g, "[a,,", 4, &p), 0);
    cr_assert(!p);
    cr_assert_eq(cg_match(g, "[abcd]", 6, &p), 0);
    cr_assert(!p);
    cr_assert_eq(cg_match(g, "", 0, &p), 0);
    cr_assert(p);
    cg_unref(g);
}

/* ---- rollback, jump-forward --------------------------------------------- */

Test(constrain_state, rollback_restores_masks, .timeout = 600)
{
    Voc vc = voc_from_gguf(MODEL);
    CGrammar *g = json_grammar();
    CMatcher *m;
    cr_assert_eq(cm_new(g, vc.v, &m), 0);
    enum { STEPS = 40 };
    uint32_t *masks = malloc((STEPS + 1) * vc.words * sizeof *masks);
    uint32_t *now = malloc(vc.words * sizeof *now);
    int32_t picks[STEPS];
    rng_state = 31337;
    int steps = 0;
    for (; steps < STEPS; steps++) {
        uint32_t *mk = masks + (size_t)steps * vc.words;
        cm_fill_mask(m, mk);
        int32_t t;
        do
            t = (int32_t)rnd((uint32_t)vc.n);
        while (!bit(mk, t) || (vc.flags[t] & CV_EOG));
        picks[steps] = t;
        cr_assert_eq(cm_accept_token(m, t), 0);
    }
    cr_assert_eq(cm_history(m), STEPS);
    for (int back = 1; back <= STEPS; back += 7) {
        cr_assert_eq(cm_rollback(m, back), 0);
        cr_assert_eq(cm_history(m), STEPS - back);
        cm_fill_mask(m, now);
        cr_assert_eq(memcmp(now, masks + (size_t)(STEPS - back) * vc.words, vc.words * sizeof *now), 0,
                     "mask after rolling back %d", back);
        for (int k = STEPS - back; k < STEPS; k++)
            cr_assert_eq(cm_accept_token(m, picks[k]), 0, "replay");
    }
    cr_assert_eq(cm_rollback(m, STEPS + 1), ERR_ARG);
    free(masks);
    free(now);
    cm_free(m);
    cg_unref(g);
    voc_free(&vc);
}

Test(constrain_state, forced_tokens)
{
    const char *toks[] = { "{", "\"name", "\": \"", "a", "b", "\"}", "<eos>", "n", "ame" };
    uint8_t flags[] = { 0, 0, 0, 0, 0, 0, CV_EOG, 0, 0 };
    Voc vc = voc_from_strings(toks, 9, flags);
    CGrammar *g = regex("\\{\"name\": \"[ab]{1,3}\"\\}");
    CMatcher *m;
    cr_assert_eq(cm_new(g, vc.v, &m), 0);
    int32_t ids[16];
    int n = cm_forced(m, ids, 1);
    cr_assert_eq(n, 1, "cap respected");
    cr_assert_eq(ids[0], 0);
    n = cm_forced(m, ids, 16);
    cr_assert_eq(n, 2);
    cr_assert(ids[0] == 1 && ids[1] == 2);
    uint32_t mask[2];
    cr_assert_eq(cm_fill_mask(m, mask), 2, "a or b");
    cr_assert_eq(cm_forced(m, ids, 16), 0, "a or b: a choice");
    cr_assert_eq(cm_accept_token(m, 3), 0);
    cr_assert_eq(cm_accept_token(m, 5), 0);
    cr_assert_eq(cm_forced(m, ids, 16), 0, "only the end is left: never forced");
    cr_assert(cm_can_end(m));
    cr_assert_eq(cm_history(m), 5);
    cm_free(m);
    cg_unref(g);
    voc_free(&vc);
}

/* On the default vocabulary: a real vocabulary offers every prefix of the
 * rest as a token, so only a one-byte rest is forced; every forced token
 * was the only one allowed. */
Test(constrain_state, forced_tokens_default_vocab, .timeout = 600)
{
    Voc vc = voc_from_gguf(MODEL);
    CGrammar *g = regex("\\{\"name\": \"[a-z]{1,10}\", \"kind\": \"(person|place)\"\\}");
    CMatcher *m, *r;
    cr_assert_eq(cm_new(g, vc.v, &m), 0);
    cr_assert_eq(cm_new(g, vc.v, &r), 0);
    uint32_t *mask = malloc(vc.words * sizeof *mask);
    const char *pre = "{\"name\": \"ab\", \"kind\": \"person\"";
    cr_assert_eq(cm_accept_bytes(m, pre, strlen(pre), NULL), 0);
    cr_assert_eq(cm_accept_bytes(r, pre, strlen(pre), NULL), 0);
    int32_t ids[64];
    int n = cm_forced(m, ids, 64);
    cr_assert_eq(n, 1, "after the closing quote only \"}\" fits");
    for (int i = 0; i < n; i++) {
        cr_assert_eq(cm_fill_mask(r, mask), 1, "forced token %d was the only one", i);
        cr_assert(bit(mask, ids[i]));
        cr_assert_eq(cm_accept_token(r, ids[i]), 0);
    }
    cr_assert(cm_can_end(m), "forced up to the end");
    cr_assert_eq(cm_forced(m, ids, 64), 0);
    free(mask);
    cm_free(m);
    cm_free(r);
    cg_unref(g);
    voc_free(&vc);
}

/* ---- concurrency -------------------------------------------------------- */

typedef struct {
    CGrammar *g;
    const Voc *vc;
    const int32_t *picks;
    int npicks;
    const uint32_t *expect;     /* npicks + 1 masks */
    int bad;
} ThreadArg;

static void *thread_walk(void *p)
{
    ThreadArg *a = p;
    CMatcher *m;
    if (cm_new(a->g, a->vc->v, &m) < 0) {
        a->bad = 1;
        return NULL;
    }
    uint32_t *mask = malloc(a->vc->words * sizeof *mask);
    for (int k = 0; k <= a->npicks; k++) {
        cm_fill_mask(m, mask);
        if (memcmp(mask, a->expect + (size_t)k * a->vc->words, a->vc->words * sizeof *mask))
            a->bad++;
        if (k < a->npicks && cm_accept_token(m, a->picks[k]) < 0)
            a->bad++;
    }
    free(mask);
    cm_free(m);
    return NULL;
}

Test(constrain_state, concurrent_matchers_agree, .timeout = 600)
{
    Voc vc = voc_from_gguf(MODEL);
    enum { STEPS = 60, THREADS = 4 };
    /* the reference: one matcher alone, on its own grammar (own cache) */
    CGrammar *ref = json_grammar();
    CMatcher *m;
    cr_assert_eq(cm_new(ref, vc.v, &m), 0);
    uint32_t *expect = malloc((STEPS + 1) * vc.words * sizeof *expect);
    int32_t picks[STEPS];
    rng_state = 2718;
    int n = 0;
    for (; n <= STEPS; n++) {
        uint32_t *mk = expect + (size_t)n * vc.words;
        cm_fill_mask(m, mk);
        if (n == STEPS)
            break;
        int32_t t;
        do
            t = (int32_t)rnd((uint32_t)vc.n);
        while (!bit(mk, t) || (vc.flags[t] & CV_EOG));
        picks[n] = t;
        cm_accept_token(m, t);
    }
    cm_free(m);
    cg_unref(ref);
    /* the same walk in several threads at once on a fresh grammar: the
     * cache is filled concurrently */
    CGrammar *g = json_grammar();
    pthread_t th[THREADS];
    ThreadArg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (ThreadArg){ g, &vc, picks, STEPS, expect, 0 };
        pthread_create(&th[i], NULL, thread_walk, &args[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        cr_assert_eq(args[i].bad, 0, "thread %d: %d masks differ", i, args[i].bad);
    }
    cg_unref(g);
    free(expect);
    voc_free(&vc);
}
