/* tests/unit/test_constrain_build.c — the compile side of constrain/: the
 * builder, cgb_build's automata (G1-G5) and the front ends.
 *
 * Oracles, independent of the code under test:
 *  - regexes: PCRE2 (PCRE2_UTF, anchored at both ends) on random regexes of
 *    the §9 subset and random, sampled and mutated strings;
 *  - grammars: an Earley recognizer over the parsed GBNF tree
 *    (grammar_syntax.h), against an Earley recognizer over the compiled
 *    CGrammar's automata (calls as nonterminals);
 *  - UTF-8: base/utf8's validator.
 * Fixed seeds throughout. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "base/utf8.h"
#include "constrain/constrain.h"
#include "constrain/grammar.h"
#include "constrain/grammar_syntax.h"
#include "constrain/regex_syntax.h"

/* ---- helpers ------------------------------------------------------------------- */

static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}
static int rn(int n) { return (int)(rnd() % (uint64_t)n); }

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static void bput(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void bputs(Buf *b, const char *s) { bput(b, s, strlen(s)); }

/* Runs a grammar of one rule without calls (a regex) over s: 1 accepted,
 * 0 not; *live = s is a prefix of an accepted string (G3: every state the
 * DFA reaches is live, so this is "no edge was missing"). */
static int run_dfa(const CGrammar *g, const char *s, size_t n, bool *live) {
    const CgRule *r = &g->rules[g->start];
    int32_t q = r->start;
    for (size_t i = 0; i < n; i++) {
        q = r->next[(size_t)q * r->nclasses + r->classmap[(uint8_t)s[i]]];
        if (q < 0) {
            if (live) *live = false;
            return 0;
        }
    }
    if (live) *live = true;
    return r->final[q];
}

/* G1-G5 as far as they can be checked on the tables. */
static void check_invariants(const CGrammar *g) {
    cr_assert(g->start >= 0 && g->start < g->nrules);
    for (int32_t r = 0; r < g->nrules; r++) {
        const CgRule *R = &g->rules[r];
        cr_assert(R->nstates > 0 && R->start >= 0 && R->start < R->nstates);
        cr_assert(R->nclasses >= 1 && R->nclasses <= 256);
        for (int b = 0; b < 256; b++) cr_assert(R->classmap[b] < R->nclasses);
        for (int32_t i = 0; i < R->nstates * R->nclasses; i++) cr_assert(R->next[i] >= -1 && R->next[i] < R->nstates);
        cr_assert(R->call_off[0] == 0);
        for (int32_t s = 0; s < R->nstates; s++) {
            cr_assert(R->call_off[s] <= R->call_off[s + 1]);
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) {
                cr_assert(R->calls[j].rule >= 0 && R->calls[j].rule < g->nrules, "G1");
                cr_assert(R->calls[j].to >= 0 && R->calls[j].to < R->nstates);
            }
        }
        cr_assert_eq(g->nullable[r], R->final[R->start], "G5");
        /* G3: every state reaches a final state (callees can all finish) */
        uint8_t *live = calloc((size_t)R->nstates, 1);
        int changed = 1;
        while (changed) {
            changed = 0;
            for (int32_t s = 0; s < R->nstates; s++) {
                if (live[s]) continue;
                int l = R->final[s];
                for (int32_t k = 0; k < R->nclasses && !l; k++) {
                    int32_t t = R->next[(size_t)s * R->nclasses + k];
                    l = t >= 0 && live[t];
                }
                for (int32_t j = R->call_off[s]; j < R->call_off[s + 1] && !l; j++) l = live[R->calls[j].to];
                if (l) live[s] = 1, changed = 1;
            }
        }
        for (int32_t s = 0; s < R->nstates; s++) cr_assert(live[s], "G3: rule %d state %d is dead", r, s);
        free(live);
    }
}

/* ---- PCRE2 -------------------------------------------------------------------- */

typedef struct {
    pcre2_code *code;
    pcre2_match_data *md;
} Pcre;

/* §9 text → PCRE2 text: `{,n}` is a literal in PCRE2 10.42, `\u{..}` is
 * PCRE2's `\x{..}`. */
static char *to_pcre(const char *re) {
    Buf b = {0};
    bputs(&b, "");
    int in_class = 0;
    for (size_t i = 0; re[i]; i++) {
        if (re[i] == '\\' && re[i + 1] == 'u') {
            bputs(&b, "\\x");     /* \u{H..} is PCRE2's \x{H..} */
            i++;
            continue;
        }
        if (re[i] == '\\' && re[i + 1]) {
            bput(&b, re + i, 2);
            i++;
            continue;
        }
        if (in_class) {
            if (re[i] == ']') in_class = 0;
            bput(&b, re + i, 1);
            continue;
        }
        if (re[i] == '[') {
            in_class = 1;
            bput(&b, re + i, 1);
            if (re[i + 1] == '^') bput(&b, re + ++i, 1);
            if (re[i + 1] == ']') bput(&b, re + ++i, 1);
            continue;
        }
        if (re[i] == '{' && re[i + 1] == ',') {
            bputs(&b, "{0");
            continue;
        }
        bput(&b, re + i, 1);
    }
    return b.p;
}

static int pcre_open(Pcre *p, const char *re) {
    char *t = to_pcre(re);
    int ec;
    PCRE2_SIZE eo;
    p->code = pcre2_compile((PCRE2_SPTR)t, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                            &ec, &eo, NULL);
    free(t);
    if (!p->code) return -1;
    p->md = pcre2_match_data_create_from_pattern(p->code, NULL);
    return 0;
}

static int pcre_match(Pcre *p, const char *s, size_t n) {
    if (!utf8_valid(s, n)) return 0;
    int rc = pcre2_match(p->code, (PCRE2_SPTR)s, n, 0, 0, p->md, NULL);
    return rc >= 0;
}

static void pcre_close(Pcre *p) {
    pcre2_match_data_free(p->md);
    pcre2_code_free(p->code);
}

/* ---- random regexes of the §9 subset ------------------------------------------ */

static const char *const atoms[] = {
    "a", "b", "c", "ab", ".", "[a-c]", "[^ab]", "[^a]", "\\d", "\\w", "\\s", "\\D", "[b-d\\d]", "é", "中",
    "😀", "[é-ü]", "[^\\x00-\\x7f]", "\\.", "\\x41", "\\u{e9}", "[α-ω]", "[^a-zé]", "\\n", " ", "-", "[\\s\\w]",
};

static void gen_regex(Buf *b, int depth) {
    int k = depth <= 0 ? 0 : rn(10);
    if (k <= 3) {
        bputs(b, atoms[rn((int)(sizeof atoms / sizeof *atoms))]);
    } else if (k <= 5) {
        gen_regex(b, depth - 1);
        gen_regex(b, depth - 1);
    } else if (k <= 6) {
        bputs(b, rn(2) ? "(" : "(?:");
        gen_regex(b, depth - 1);
        bputs(b, "|");
        if (rn(5)) gen_regex(b, depth - 1);
        bputs(b, ")");
    } else {
        bputs(b, "(");
        gen_regex(b, depth - 1);
        bputs(b, ")");
        static const char *const q[] = {"*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}", "{,2}", "*?", "{3}"};
        bputs(b, q[rn(10)]);
    }
}

/* A random string the tree matches (repeats capped). */
static void sample(Buf *b, const RxNode *n) {
    char u[4];
    switch (n->kind) {
    case RX_EMPTY: break;
    case RX_CHAR: bput(b, u, (size_t)utf8_encode(n->cp, u)); break;
    case RX_CLASS: {
        const RxRange *r = &n->ranges[rn(n->nranges)];
        uint32_t span = r->hi - r->lo + 1;
        uint32_t cp = r->lo + (uint32_t)(rn(4) == 0 ? 0 : rn(4) == 0 ? span - 1 : (uint32_t)(rnd() % span));
        bput(b, u, (size_t)utf8_encode(cp, u));
        break;
    }
    case RX_CONCAT:
        for (int i = 0; i < n->nkids; i++) sample(b, n->kids[i]);
        break;
    case RX_ALT: sample(b, n->kids[rn(n->nkids)]); break;
    case RX_REPEAT: {
        int max = n->max == RX_INF ? n->min + 3 : n->max;
        int k = n->min + rn(max - n->min + 1);
        for (int i = 0; i < k; i++) sample(b, n->sub);
        break;
    }
    case RX_GROUP: sample(b, n->sub); break;
    }
}

static void mutate(Buf *b) {
    static const char pool[] = "abcd019 _.\n\x80\xc3\xa9\xe4\xb8\xad\xff\xed\xa0\x80";
    int m = rn(4);
    size_t at = b->n ? (size_t)rn((int)b->n + 1) : 0;
    if (m == 0 && b->n) {   /* delete a byte */
        if (at == b->n) at--;
        memmove(b->p + at, b->p + at + 1, b->n - at - 1);
        b->n--;
    } else if (m == 1 && b->n) {   /* replace */
        if (at == b->n) at--;
        b->p[at] = pool[rn((int)sizeof pool - 1)];
    } else {   /* insert */
        char c = pool[rn((int)sizeof pool - 1)];
        bput(b, "", 0);
        bput(b, &c, 1);
        memmove(b->p + at + 1, b->p + at, b->n - at - 1);
        b->p[at] = c;
    }
    if (b->p) b->p[b->n] = 0;
}

static CGrammar *compile_re(const char *re) {
    CGrammar *g = NULL;
    int pos = -1;
    char err[256];
    int rc = cg_compile_regex(re, strlen(re), NULL, &g, &pos, err, sizeof err);
    cr_assert_eq(rc, 0, "regex %s: %s (at %d)", re, err, pos);
    return g;
}

/* Every string: DFA vs PCRE2; every matching one's prefixes live. */
static int agree(CGrammar *g, Pcre *p, const char *re, const char *s, size_t n) {
    bool live;
    int got = run_dfa(g, s, n, &live);
    int want = pcre_match(p, s, n);
    cr_assert_eq(got, want, "regex /%s/ on \"%.*s\" (%zu bytes): dfa %d pcre2 %d", re, (int)n, s, n, got, want);
    return got;
}

/* ---- regex: fixed cases -------------------------------------------------------- */

Test(constrain_regex, basics) {
    static const struct {
        const char *re, *yes[4], *no[4];
    } cases[] = {
        {"abc", {"abc"}, {"", "ab", "abcd", "abd"}},
        {"a|b|", {"a", "b", ""}, {"ab", "c"}},
        {"a*b+", {"b", "aab", "abbb"}, {"", "a", "ba"}},
        {"[0-9]{2,3}", {"12", "123"}, {"1", "1234", "1a"}},
        {"x{,2}", {"", "x", "xx"}, {"xxx"}},
        {".", {"a", "é", "中", "😀"}, {"\n", "", "ab"}},
        {"[^a]", {"b", "é"}, {"a", "\xed\xa0\x80", "\xc3"}},
        {"\\d\\w\\s", {"1a ", "9_\t"}, {"a1 ", "1é "}},
        {"^ab$", {"ab"}, {"^ab$"}},
        {"(?:ab|cd)*", {"", "ab", "abcd"}, {"a", "abc"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CGrammar *g = compile_re(cases[i].re);
        check_invariants(g);
        for (int j = 0; j < 4 && cases[i].yes[j]; j++) {
            cr_expect(run_dfa(g, cases[i].yes[j], strlen(cases[i].yes[j]), NULL), "/%s/ accepts \"%s\"", cases[i].re,
                      cases[i].yes[j]);
        }
        for (int j = 0; j < 4 && cases[i].no[j]; j++) {
            cr_expect(!run_dfa(g, cases[i].no[j], strlen(cases[i].no[j]), NULL), "/%s/ rejects \"%s\"", cases[i].re,
                      cases[i].no[j]);
        }
        cg_unref(g);
    }
}

/* Minimal: equal languages written differently give DFAs of one size. */
Test(constrain_regex, minimal) {
    static const struct {
        const char *re;
        int states;
    } cases[] = {
        {"abc", 4}, {"(a|b)*", 1}, {"(a*)*b", 2}, {"a{3}|aaa", 4}, {"(ab|ac)", 3}, {"[a-z]+|[a-z]*x", 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CGrammar *g = compile_re(cases[i].re);
        cr_expect_eq(g->nrules, 1);
        cr_expect_eq(g->rules[0].nstates, cases[i].states, "/%s/: %d states, want %d", cases[i].re,
                     g->rules[0].nstates, cases[i].states);
        cg_unref(g);
    }
}

Test(constrain_regex, errors) {
    static const struct {
        const char *re;
        int code, pos;
        const char *msg;
    } cases[] = {
        {"(a", ERR_CONSTRAINT, 0, "missing ')'"},
        {"a\\1", ERR_CONSTRAINT, 1, "backreference"},
        {"(?=a)b", ERR_CONSTRAINT, 0, "look"},
        {"(?<!a)b", ERR_CONSTRAINT, 0, "look"},
        {"a{1001}", ERR_LIMIT, 1, "limit"},
        {"[b-a]", ERR_CONSTRAINT, 1, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CGrammar *g = (CGrammar *)1;
        int pos = -1;
        char err[256] = "";
        int rc = cg_compile_regex(cases[i].re, strlen(cases[i].re), NULL, &g, &pos, err, sizeof err);
        cr_expect_eq(rc, cases[i].code, "/%s/: rc %d (%s)", cases[i].re, rc, err);
        cr_expect_null(g);
        cr_expect(strstr(err, cases[i].msg), "/%s/: message \"%s\" names \"%s\"", cases[i].re, err, cases[i].msg);
        if (cases[i].pos >= 0) cr_expect_eq(pos, cases[i].pos, "/%s/: at %d, want %d (%s)", cases[i].re, pos,
                                            cases[i].pos, err);
    }
    /* caps set by the caller */
    CgLimits lim = {.max_repeat = 10, .max_dfa_states = 50};
    CGrammar *g = NULL;
    int pos;
    char err[256];
    cr_expect_eq(cg_compile_regex("a{11}", 5, &lim, &g, &pos, err, sizeof err), ERR_LIMIT);
    cr_expect(strstr(err, "limit"), "%s", err);
    cr_expect_eq(cg_compile_regex("[ab]*a[ab]{8}", 13, &lim, &g, &pos, err, sizeof err), ERR_LIMIT, "%s", err);
    cr_expect(strstr(err, "states"), "%s", err);
    cr_expect_null(g);
}

/* ---- regex: differential against PCRE2 ------------------------------------------ */

Test(constrain_regex, pcre2_differential, .timeout = 120) {
    rng_state = 0x9E3779B97F4A7C15ull;
    int nre = 0, nstr = 0, nmatch = 0;
    for (int iter = 0; iter < 1500; iter++) {
        Buf re = {0};
        bputs(&re, "");
        gen_regex(&re, 1 + rn(5));
        RxRegex tree;
        int col;
        char msg[200];
        if (rx_parse(re.p, re.n, &tree, &col, msg, sizeof msg)) {
            free(re.p);
            continue;
        }
        Pcre p;
        cr_assert_eq(pcre_open(&p, re.p), 0, "PCRE2 compiles /%s/", re.p);
        CGrammar *g = compile_re(re.p);
        check_invariants(g);
        nre++;
        for (int k = 0; k < 24; k++) {
            Buf s = {0};
            bputs(&s, "");
            if (k < 12) {
                sample(&s, tree.root);
                if (k >= 6) {
                    int m = 1 + rn(3);
                    for (int j = 0; j < m; j++) mutate(&s);
                }
            } else {
                int len = rn(8);
                for (int j = 0; j < len; j++) mutate(&s);
            }
            nmatch += agree(g, &p, re.p, s.p, s.n);
            /* prefixes of a matching string are live */
            if (k < 6) {
                for (size_t cut = 0; cut <= s.n; cut++) {
                    bool live;
                    run_dfa(g, s.p, cut, &live);
                    cr_assert(live, "/%s/: prefix %zu of \"%s\" is live", re.p, cut, s.p);
                }
            }
            nstr++;
            free(s.p);
        }
        pcre_close(&p);
        cg_unref(g);
        rx_free(&tree);
        free(re.p);
    }
    cr_log_info("%d regexes, %d strings, %d matches", nre, nstr, nmatch);
    cr_expect(nre > 1000 && nmatch > nstr / 4, "%d regexes, %d of %d strings match", nre, nmatch, nstr);
}

/* G4: no DFA accepts invalid UTF-8, whatever the class. */
Test(constrain_regex, only_valid_utf8) {
    static const char *const res[] = {".*", "[^a]*", "[\\x{0}-\\x{10ffff}]*", "[^\\n]*", "\\W*", "\\D*", "\\S*"};
    for (size_t i = 0; i < sizeof res / sizeof *res; i++) {
        CGrammar *g = compile_re(res[i]);
        /* every 1..4-byte string over lead/continuation/odd bytes */
        static const uint8_t bytes[] = {0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
                                        0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4,
                                        0xF5, 0xFF};
        int nb = (int)sizeof bytes;
        char s[4];
        for (int len = 1; len <= 4; len++) {
            long total = 1;
            for (int j = 0; j < len; j++) total *= nb;
            for (long x = 0; x < total; x++) {
                long y = x;
                for (int j = 0; j < len; j++) s[j] = (char)bytes[y % nb], y /= nb;
                if (memchr(s, '\n', (size_t)len)) continue;
                int ok = run_dfa(g, s, (size_t)len, NULL);
                if (!utf8_valid(s, (size_t)len)) cr_assert(!ok, "/%s/ accepts invalid UTF-8", res[i]);
            }
        }
        cg_unref(g);
    }
}
