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
static void check_roundtrip(const CGrammar *g);

static void check_invariants(const CGrammar *g) {
    check_roundtrip(g);
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
        if (R->final[R->start]) cr_assert(g->nullable[r], "G5");
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

/* cg_encode → cg_decode gives the same rules (cg_dump), and the decoder's
 * proof of G2-G5 accepts every grammar cgb_build makes. */
static void check_roundtrip(const CGrammar *g) {
    StrBuf b = {0};
    cr_assert_eq(cg_encode(g, &b), 0);
    CGrammar *d = NULL;
    char err[256];
    int rc = cg_decode(b.data, b.len, &d, err, sizeof err);
    char *want = cg_dump(g);
    cr_assert_eq(rc, 0, "%s\n%s", err, want);
    char *got = cg_dump(d);
    cr_assert_str_eq(got, want);
    /* truncations never decode */
    for (size_t cut = 0; cut < b.len; cut += 1 + b.len / 7) {
        CGrammar *t = NULL;
        cr_assert_neq(cg_decode(b.data, cut, &t, err, sizeof err), 0);
        cr_assert_null(t);
    }
    free(want), free(got);
    cg_unref(d);
    sb_free(&b);
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
    if (rc >= 0 || rc == PCRE2_ERROR_NOMATCH) return rc >= 0;
    /* backtracking hit its limit: the DFA matcher does not backtrack */
    static int ws[20000];
    rc = pcre2_dfa_match(p->code, (PCRE2_SPTR)s, n, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, p->md, NULL, ws, sizeof ws / sizeof *ws);
    cr_assert(rc >= 0 || rc == PCRE2_ERROR_NOMATCH, "PCRE2 could not decide (error %d)", rc);
    /* its matches come longest first; 10.42 does not hold them to the end */
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(p->md);
    return rc >= 0 && ov[0] == 0 && ov[1] == n;
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
    for (int iter = 0; iter < 3000; iter++) {
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
    cr_expect(nre > 2000 && nmatch > nstr / 4, "%d regexes, %d of %d strings match", nre, nmatch, nstr);
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

/* ---- an Earley recognizer over a compiled CGrammar (bytes; calls are
 * nonterminals). Independent of the matcher: items (rule, state, origin). */

typedef struct {
    int32_t r, s, o;
} Item;

typedef struct {
    Item *v;
    int n, cap;
} ItemSet;

static int iset_add(ItemSet *set, Item it) {
    for (int i = 0; i < set->n; i++) {
        if (set->v[i].r == it.r && set->v[i].s == it.s && set->v[i].o == it.o) return 0;
    }
    if (set->n == set->cap) {
        set->cap = set->cap ? set->cap * 2 : 16;
        set->v = realloc(set->v, (size_t)set->cap * sizeof *set->v);
    }
    set->v[set->n++] = it;
    return 1;
}

/* 1 accepted, 0 not; *live: every prefix has a live item (viable). */
static int earley_cg(const CGrammar *g, const char *s, size_t n, bool *live) {
    ItemSet *sets = calloc(n + 1, sizeof *sets);
    iset_add(&sets[0], (Item){g->start, g->rules[g->start].start, 0});
    if (live) *live = true;
    for (size_t i = 0; i <= n; i++) {
        ItemSet *S = &sets[i];
        if (S->n == 0 && live) *live = false;
        for (int k = 0; k < S->n; k++) {
            Item it = S->v[k];
            const CgRule *R = &g->rules[it.r];
            if (R->final[it.s]) {
                ItemSet *O = &sets[it.o];
                for (int j = 0; j < O->n; j++) {
                    Item p = O->v[j];
                    const CgRule *P = &g->rules[p.r];
                    for (int32_t c = P->call_off[p.s]; c < P->call_off[p.s + 1]; c++) {
                        if (P->calls[c].rule == it.r) iset_add(S, (Item){p.r, P->calls[c].to, p.o});
                    }
                }
            }
            for (int32_t c = R->call_off[it.s]; c < R->call_off[it.s + 1]; c++) {
                int32_t callee = R->calls[c].rule;
                iset_add(S, (Item){callee, g->rules[callee].start, (int32_t)i});
                if (g->nullable[callee]) iset_add(S, (Item){it.r, R->calls[c].to, it.o});
            }
            if (i < n) {
                int32_t t = R->next[(size_t)it.s * R->nclasses + R->classmap[(uint8_t)s[i]]];
                if (t >= 0) iset_add(&sets[i + 1], (Item){it.r, t, it.o});
            }
        }
    }
    int ok = 0;
    for (int k = 0; k < sets[n].n; k++) {
        Item it = sets[n].v[k];
        if (it.r == g->start && it.o == 0 && g->rules[it.r].final[it.s]) ok = 1;
    }
    for (size_t i = 0; i <= n; i++) free(sets[i].v);
    free(sets);
    return ok;
}

/* ---- the reference: Earley over the parsed GBNF tree, on code points ---------- *
 * The tree becomes BNF: one nonterminal per rule and per node; repeats
 * unrolled with helper nonterminals. Symbols >= 0 are nonterminals, < 0 are
 * terminals -(k+1): a set of code-point ranges. */

typedef struct {
    int lhs;
    int *rhs;
    int n;
} Prod;

typedef struct {
    Prod *p;
    int np, capp;
    int nnt;
    const RxRange **tr;     /* terminal k: ranges */
    int *trn;
    uint32_t *tcp;          /* or one code point when trn[k] == 0 */
    int nt, capt;
    int *rule_nt;
} Bnf;

static int bnf_nt(Bnf *b) { return b->nnt++; }

static void bnf_prod(Bnf *b, int lhs, const int *rhs, int n) {
    if (b->np == b->capp) {
        b->capp = b->capp ? b->capp * 2 : 64;
        b->p = realloc(b->p, (size_t)b->capp * sizeof *b->p);
    }
    int *r = malloc(((size_t)n + 1) * sizeof *r);
    if (n) memcpy(r, rhs, (size_t)n * sizeof *r);
    b->p[b->np++] = (Prod){lhs, r, n};
}

static int bnf_term(Bnf *b, const RxRange *r, int n, uint32_t cp) {
    if (b->nt == b->capt) {
        b->capt = b->capt ? b->capt * 2 : 64;
        b->tr = realloc(b->tr, (size_t)b->capt * sizeof *b->tr);
        b->trn = realloc(b->trn, (size_t)b->capt * sizeof *b->trn);
        b->tcp = realloc(b->tcp, (size_t)b->capt * sizeof *b->tcp);
    }
    b->tr[b->nt] = r;
    b->trn[b->nt] = n;
    b->tcp[b->nt] = cp;
    return -(++b->nt);
}

static int bnf_node(Bnf *b, const GbNode *n) {
    int A = bnf_nt(b);
    switch (n->kind) {
    case GB_STR: {
        int *rhs = malloc((n->len + 1) * sizeof *rhs), k = 0;
        for (size_t i = 0; i < n->len;) {
            uint32_t cp;
            i += (size_t)utf8_decode(n->str + i, n->len - i, &cp);
            rhs[k++] = bnf_term(b, NULL, 0, cp);
        }
        bnf_prod(b, A, rhs, k);
        free(rhs);
        break;
    }
    case GB_CLASS: {
        int t = bnf_term(b, n->ranges, n->nranges, 0);
        bnf_prod(b, A, &t, 1);
        break;
    }
    case GB_REF: bnf_prod(b, A, &b->rule_nt[n->rule], 1); break;
    case GB_SEQ: {
        int *rhs = malloc(((size_t)n->nkids + 1) * sizeof *rhs);
        for (int i = 0; i < n->nkids; i++) rhs[i] = bnf_node(b, n->kids[i]);
        bnf_prod(b, A, rhs, n->nkids);
        free(rhs);
        break;
    }
    case GB_ALT:
        for (int i = 0; i < n->nkids; i++) {
            int k = bnf_node(b, n->kids[i]);
            bnf_prod(b, A, &k, 1);
        }
        break;
    case GB_REPEAT: {
        int x = bnf_node(b, n->sub);
        /* tail: x* (max inf) or x{0,max-min} */
        int tail = bnf_nt(b);
        if (n->max == RX_INF) {
            int rhs[2] = {x, tail};
            bnf_prod(b, tail, NULL, 0);
            bnf_prod(b, tail, rhs, 2);
        } else {
            /* T_k = ε | x T_{k-1}, T_0 = ε */
            int prev = bnf_nt(b);
            bnf_prod(b, prev, NULL, 0);
            for (int k = 0; k < n->max - n->min; k++) {
                int t = bnf_nt(b), rhs[2] = {x, prev};
                bnf_prod(b, t, NULL, 0);
                bnf_prod(b, t, rhs, 2);
                prev = t;
            }
            bnf_prod(b, tail, &prev, 1);
        }
        int *rhs = malloc(((size_t)n->min + 2) * sizeof *rhs);
        for (int i = 0; i < n->min; i++) rhs[i] = x;
        rhs[n->min] = tail;
        bnf_prod(b, A, rhs, n->min + 1);
        free(rhs);
        break;
    }
    }
    return A;
}

static void bnf_build(Bnf *b, const GbnfGrammar *g) {
    memset(b, 0, sizeof *b);
    b->rule_nt = malloc((size_t)g->nrules * sizeof *b->rule_nt);
    for (int i = 0; i < g->nrules; i++) b->rule_nt[i] = bnf_nt(b);
    for (int i = 0; i < g->nrules; i++) {
        int body = bnf_node(b, g->rules[i].body);
        bnf_prod(b, b->rule_nt[i], &body, 1);
    }
}

static void bnf_free(Bnf *b) {
    for (int i = 0; i < b->np; i++) free(b->p[i].rhs);
    free(b->p), free(b->tr), free(b->trn), free(b->tcp), free(b->rule_nt);
}

static int term_match(const Bnf *b, int t, uint32_t cp) {
    int k = -t - 1;
    if (b->trn[k] == 0) return b->tcp[k] == cp;
    for (int i = 0; i < b->trn[k]; i++) {
        if (cp >= b->tr[k][i].lo && cp <= b->tr[k][i].hi) return 1;
    }
    return 0;
}

typedef struct {
    int p, dot, o;
} BItem;

typedef struct {
    BItem *v;
    int n, cap;
} BSet;

static void bset_add(BSet *s, BItem it) {
    for (int i = 0; i < s->n; i++) {
        if (s->v[i].p == it.p && s->v[i].dot == it.dot && s->v[i].o == it.o) return;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 32;
        s->v = realloc(s->v, (size_t)s->cap * sizeof *s->v);
    }
    s->v[s->n++] = it;
}

/* Whether the text (bytes) is in the language of nonterminal `start`. */
static int earley_bnf(const Bnf *b, int start, const char *s, size_t n) {
    if (!utf8_valid(s, n)) return 0;
    uint32_t *cps = malloc((n + 1) * sizeof *cps);
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        i += (size_t)utf8_decode(s + i, n - i, &cps[m]);
        m++;
    }
    /* nullable nonterminals (fixpoint) */
    uint8_t *nul = calloc((size_t)b->nnt, 1);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < b->np; i++) {
            if (nul[b->p[i].lhs]) continue;
            int all = 1;
            for (int k = 0; k < b->p[i].n && all; k++) all = b->p[i].rhs[k] >= 0 && nul[b->p[i].rhs[k]];
            if (all) nul[b->p[i].lhs] = 1, changed = 1;
        }
    }
    BSet *sets = calloc(m + 1, sizeof *sets);
    for (int i = 0; i < b->np; i++) {
        if (b->p[i].lhs == start) bset_add(&sets[0], (BItem){i, 0, 0});
    }
    for (size_t i = 0; i <= m; i++) {
        BSet *S = &sets[i];
        for (int k = 0; k < S->n; k++) {
            BItem it = S->v[k];
            const Prod *P = &b->p[it.p];
            if (it.dot == P->n) {
                BSet *O = &sets[it.o];
                for (int j = 0; j < O->n; j++) {
                    BItem q = O->v[j];
                    const Prod *Q = &b->p[q.p];
                    if (q.dot < Q->n && Q->rhs[q.dot] == P->lhs) bset_add(S, (BItem){q.p, q.dot + 1, q.o});
                }
                continue;
            }
            int sym = P->rhs[it.dot];
            if (sym >= 0) {
                for (int j = 0; j < b->np; j++) {
                    if (b->p[j].lhs == sym) bset_add(S, (BItem){j, 0, (int)i});
                }
                if (nul[sym]) bset_add(S, (BItem){it.p, it.dot + 1, it.o});
            } else if (i < m && term_match(b, sym, cps[i])) {
                bset_add(&sets[i + 1], (BItem){it.p, it.dot + 1, it.o});
            }
        }
    }
    int ok = 0;
    for (int k = 0; k < sets[m].n; k++) {
        BItem it = sets[m].v[k];
        if (b->p[it.p].lhs == start && it.o == 0 && it.dot == b->p[it.p].n) ok = 1;
    }
    for (size_t i = 0; i <= m; i++) free(sets[i].v);
    free(sets), free(nul), free(cps);
    return ok;
}

/* A random string of the tree's language (depth-capped; 0 when the cap was hit). */
static int gb_sample(Buf *o, const GbnfGrammar *g, const GbNode *n, int depth) {
    if (depth > 40) return 0;
    char u[4];
    switch (n->kind) {
    case GB_STR: bput(o, n->str, n->len); return 1;
    case GB_CLASS: {
        const RxRange *r = &n->ranges[rn(n->nranges)];
        uint32_t span = r->hi - r->lo + 1;
        uint32_t cp = r->lo + (span > 1 && rn(3) ? (uint32_t)(rnd() % span) : 0);
        bput(o, u, (size_t)utf8_encode(cp, u));
        return 1;
    }
    case GB_REF: return gb_sample(o, g, g->rules[n->rule].body, depth + 1);
    case GB_SEQ:
        for (int i = 0; i < n->nkids; i++) {
            if (!gb_sample(o, g, n->kids[i], depth + 1)) return 0;
        }
        return 1;
    case GB_ALT: return gb_sample(o, g, n->kids[rn(n->nkids)], depth + 1);
    case GB_REPEAT: {
        int max = n->max == RX_INF ? n->min + 2 : n->max;
        int k = n->min + rn(max - n->min + 1);
        for (int i = 0; i < k; i++) {
            if (!gb_sample(o, g, n->sub, depth + 1)) return 0;
        }
        return 1;
    }
    }
    return 0;
}

static CGrammar *compile_gbnf(const char *src) {
    CGrammar *g = NULL;
    int line = 0, col = 0;
    char err[256];
    int rc = cg_compile_gbnf(src, strlen(src), NULL, &g, &line, &col, err, sizeof err);
    cr_assert_eq(rc, 0, "grammar:\n%s\n%d:%d: %s", src, line, col, err);
    check_invariants(g);
    return g;
}

/* Compiled vs reference on strings sampled, mutated and random. */
static void grammar_agrees(const char *src, int nsamples) {
    GbnfGrammar t;
    int line, col;
    char msg[200];
    cr_assert_eq(gbnf_parse(src, strlen(src), &t, &line, &col, msg, sizeof msg), 0, "%s", msg);
    Bnf bnf;
    bnf_build(&bnf, &t);
    CGrammar *g = compile_gbnf(src);
    for (int k = 0; k < nsamples; k++) {
        Buf s = {0};
        bputs(&s, "");
        int sampled = 0;
        if (k % 3 != 2) {
            sampled = gb_sample(&s, &t, t.rules[t.root].body, 0);
            if (!sampled) s.n = 0;
            if (k % 3 == 1) mutate(&s);
        } else {
            int len = rn(10);
            for (int j = 0; j < len; j++) {
                char c = "abc()+x"[rn(7)];
                bput(&s, &c, 1);
            }
        }
        bool live;
        int got = earley_cg(g, s.p, s.n, &live);
        int want = earley_bnf(&bnf, bnf.rule_nt[t.root], s.p, s.n);
        cr_assert_eq(got, want, "grammar:\n%s\non \"%.*s\": compiled %d, reference %d\n%s", src, (int)s.n, s.p, got,
                     want, cg_dump(g));
        if (sampled && k % 3 == 0) cr_assert(got, "a sampled string is accepted: \"%s\"", s.p);
        if (got) cr_assert(live, "prefixes of an accepted string are viable");
        free(s.p);
    }
    cg_unref(g);
    bnf_free(&bnf);
    gbnf_free(&t);
}

Test(constrain_grammar, fixed) {
    static const char *const grammars[] = {
        "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= factor ((\"*\" | \"/\") factor)*\n"
        "factor ::= [0-9]+ | \"(\" expr \")\"",
        "root ::= \"a\" root \"b\" | \"\"",
        "root ::= ( [a-c] | \"x\" root )+ \"!\"?",
        "root ::= item (\",\" item){0,3}\nitem ::= [a-z]{1,2} | \"[\" root \"]\"",
        "root ::= .* \"end\"",
        "root ::= [^abc]+ | [^]",
    };
    rng_state = 12345;
    for (size_t i = 0; i < sizeof grammars / sizeof *grammars; i++) grammar_agrees(grammars[i], 300);
}

Test(constrain_grammar, left_recursion) {
    static const char *const grammars[] = {
        "root ::= root \"a\" | \"a\"",
        "root ::= root \"+\" term | term\nterm ::= term \"*\" f | f\nf ::= [0-9] | \"(\" root \")\"",
        "root ::= a \"x\" | \"y\"\na ::= root \"z\" | \"w\"",                 /* indirect */
        "root ::= opt root \"b\" | \"c\"\nopt ::= \"a\"?",                    /* through a nullable prefix */
        "root ::= x y root \"q\" | \"p\"\nx ::= \"\" | \"x\"\ny ::= \"y\"*",
        "root ::= root | root root | \"a\"",                                 /* cyclic */
        "root ::= a\na ::= b \"1\" | \"0\"\nb ::= c?\nc ::= a \"2\"",
        "root ::= (root \"a\")? \"b\"",
        "root ::= root* \"a\"",
    };
    rng_state = 777;
    for (size_t i = 0; i < sizeof grammars / sizeof *grammars; i++) grammar_agrees(grammars[i], 300);
}

/* Random grammars (rules r0..r3, left recursion included) against the reference. */
static void gen_body(Buf *b, int depth, int nrules) {
    int k = depth <= 0 ? rn(4) : rn(9);
    char tmp[16];
    switch (k) {
    case 0: bputs(b, (const char *const[]){"\"a\"", "\"b\"", "\"ab\"", "\"\"", "[a-c]", "[^a]", "\"c\""}[rn(7)]); break;
    case 1:
    case 2:
        snprintf(tmp, sizeof tmp, "r%d", rn(nrules));
        bputs(b, tmp);
        break;
    case 3: bputs(b, "\"x\""); break;
    case 4:
    case 5:
        gen_body(b, depth - 1, nrules);
        bputs(b, " ");
        gen_body(b, depth - 1, nrules);
        break;
    case 6:
        bputs(b, "(");
        gen_body(b, depth - 1, nrules);
        bputs(b, " | ");
        gen_body(b, depth - 1, nrules);
        bputs(b, ")");
        break;
    default:
        bputs(b, "(");
        gen_body(b, depth - 1, nrules);
        bputs(b, ")");
        bputs(b, (const char *const[]){"*", "+", "?", "{0,2}", "{2}"}[rn(5)]);
    }
}

Test(constrain_grammar, random, .timeout = 300) {
    rng_state = 0xC0FFEE;
    int ok = 0, empty = 0;
    for (int iter = 0; iter < 400; iter++) {
        Buf src = {0};
        int nrules = 1 + rn(4);
        for (int r = 0; r < nrules; r++) {
            char head[32];
            snprintf(head, sizeof head, "%sr%d ::= ", r ? "\n" : "root ::= r0\n", r);
            bputs(&src, head);
            gen_body(&src, 3, nrules);
            if (rn(2)) {
                bputs(&src, " | ");
                gen_body(&src, 2, nrules);
            }
        }
        CGrammar *g = NULL;
        int line, col;
        char err[256];
        int rc = cg_compile_gbnf(src.p, src.n, NULL, &g, &line, &col, err, sizeof err);
        if (rc == ERR_CONSTRAINT && strstr(err, "matches nothing")) {
            /* the reference agrees that nothing is accepted */
            GbnfGrammar t;
            cr_assert_eq(gbnf_parse(src.p, src.n, &t, &line, &col, err, sizeof err), 0);
            Bnf bnf;
            bnf_build(&bnf, &t);
            for (int k = 0; k < 30; k++) {
                char s[8];
                int len = rn(6);
                for (int j = 0; j < len; j++) s[j] = "abcx"[rn(4)];
                cr_assert(!earley_bnf(&bnf, bnf.rule_nt[t.root], s, (size_t)len), "empty grammar accepts:\n%s",
                          src.p);
            }
            bnf_free(&bnf);
            gbnf_free(&t);
            empty++;
            free(src.p);
            continue;
        }
        cr_assert_eq(rc, 0, "grammar:\n%s\n%d:%d: %s", src.p, line, col, err);
        cg_unref(g);
        grammar_agrees(src.p, 60);
        ok++;
        free(src.p);
    }
    cr_log_info("%d random grammars compiled, %d empty", ok, empty);
    cr_expect(ok > 300);
}

/* ---- front ends: errors, EBNF, type, choices ------------------------------------ */

Test(constrain_grammar, errors) {
    static const struct {
        const char *src;
        int code, line, col;
        const char *msg;
    } cases[] = {
        {"root ::= a", ERR_CONSTRAINT, 1, 10, "undefined rule 'a'"},
        {"root ::= \"a\" x\nx ::= x \"b\"", ERR_CONSTRAINT, 1, 1, "matches nothing"},
        {"root ::= \"a\"{2000}", ERR_CONSTRAINT, 1, 13, "too large"},
        {"root ::= <[1000]>", ERR_UNSUPPORTED, 1, 10, "token references"},
        {"root ::= [b-a]", ERR_CONSTRAINT, 1, 11, "out of order"},
        {"root ::= []", ERR_CONSTRAINT, 1, 10, "empty character class"},
        {"root ::= \"\\q\"", ERR_CONSTRAINT, 1, 11, "unknown escape"},
        {"x ::= \"a\"", ERR_CONSTRAINT, 1, 1, "root"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CGrammar *g = NULL;
        int line = 0, col = 0;
        char err[256] = "";
        int rc = cg_compile_gbnf(cases[i].src, strlen(cases[i].src), NULL, &g, &line, &col, err, sizeof err);
        cr_expect_eq(rc, cases[i].code, "%s: rc %d (%s)", cases[i].src, rc, err);
        cr_expect_null(g);
        cr_expect(strstr(err, cases[i].msg), "%s: \"%s\" names \"%s\"", cases[i].src, err, cases[i].msg);
        cr_expect(line == cases[i].line && col == cases[i].col, "%s: at %d:%d, want %d:%d (%s)", cases[i].src, line,
                  col, cases[i].line, cases[i].col, err);
    }
    /* a cap of the caller, reported at the node */
    CgLimits lim = {.max_repeat = 5};
    CGrammar *g = NULL;
    int line, col;
    char err[256];
    const char *src = "root ::= \"x\"\n  \"a\"{6}";
    cr_expect_eq(cg_compile_gbnf(src, strlen(src), &lim, &g, &line, &col, err, sizeof err), ERR_LIMIT, "%s", err);
    cr_expect(line == 2 && col == 3, "at %d:%d", line, col);
}

Test(constrain_grammar, ebnf) {
    static const struct {
        const char *src, *yes[3], *no[3];
    } cases[] = {
        {"root ::= a.b\na.b ::= [\\x41-\\x5A]+ \"\\e\"", {"AB\x1b", "Z\x1b"}, {"AB", "a\x1b"}},
        {"root ::= ( ) \"a\" | \"\\?\\/\"", {"a", "?/"}, {"", "b"}},
        {"root ::= [^]{2}", {"\n\n", "ab", "é中"}, {"a", "abc"}},
        {"root ::= root \"a\" | \"a\"", {"a", "aaa"}, {"", "b"}},
        {"root ::= [\\^\\$\\.\\*]+", {"^$.*"}, {"a"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CGrammar *g = NULL;
        int line, col;
        char err[256];
        int rc = cg_compile_ebnf(cases[i].src, strlen(cases[i].src), NULL, &g, &line, &col, err, sizeof err);
        cr_assert_eq(rc, 0, "%s: %d:%d %s", cases[i].src, line, col, err);
        check_invariants(g);
        for (int j = 0; j < 3 && cases[i].yes[j]; j++) {
            cr_expect(earley_cg(g, cases[i].yes[j], strlen(cases[i].yes[j]), NULL), "%s accepts \"%s\"", cases[i].src,
                      cases[i].yes[j]);
        }
        for (int j = 0; j < 3 && cases[i].no[j]; j++) {
            cr_expect(!earley_cg(g, cases[i].no[j], strlen(cases[i].no[j]), NULL), "%s rejects \"%s\"", cases[i].src,
                      cases[i].no[j]);
        }
        cg_unref(g);
    }
    static const struct {
        const char *src, *msg;
    } refused[] = {
        {"root ::= Regex(\"[0-9]+\")", "macro 'Regex(...)'"},
        {"root[lazy] ::= \"a\"", "rule options"},
        {"root ::= \"a\" (= \"b\")", "lookahead"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        CGrammar *g = NULL;
        int line, col;
        char err[256];
        int rc = cg_compile_ebnf(refused[i].src, strlen(refused[i].src), NULL, &g, &line, &col, err, sizeof err);
        cr_expect_eq(rc, ERR_UNSUPPORTED, "%s: %d (%s)", refused[i].src, rc, err);
        cr_expect(strstr(err, refused[i].msg) && strstr(err, "not supported"), "%s: %s", refused[i].src, err);
    }
}

Test(constrain_front, types_and_choices) {
    static const struct {
        const char *type, *yes[4], *no[4];
    } cases[] = {
        {"int", {"42", "-7", "+0 \n"}, {"", "4.2", "a", " 1"}},
        {"float", {"1.5", "-.5", "3", "7.25 "}, {"1.", ".", "1e5", "--1"}},
        {"bool", {"True", "False"}, {"true", "1", "TrueFalse"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CGrammar *g = NULL;
        char err[128];
        cr_assert_eq(cg_compile_type(cases[i].type, &g, err, sizeof err), 0, "%s", err);
        for (int j = 0; j < 4 && cases[i].yes[j]; j++) {
            cr_expect(run_dfa(g, cases[i].yes[j], strlen(cases[i].yes[j]), NULL), "%s \"%s\"", cases[i].type,
                      cases[i].yes[j]);
        }
        for (int j = 0; j < 4 && cases[i].no[j]; j++) {
            cr_expect(!run_dfa(g, cases[i].no[j], strlen(cases[i].no[j]), NULL), "%s \"%s\"", cases[i].type,
                      cases[i].no[j]);
        }
        cg_unref(g);
    }
    CGrammar *g = NULL;
    char err[128];
    cr_expect_eq(cg_compile_type("str", &g, err, sizeof err), ERR_CONSTRAINT);
    cr_expect(strstr(err, "'str'"), "%s", err);

    const char *ch[] = {"yes", "no", "maybe", "no", ""};
    size_t lens[] = {3, 2, 5, 2, 0};
    cr_assert_eq(cg_compile_choices(ch, lens, 5, &g, err, sizeof err), 0, "%s", err);
    check_invariants(g);
    cr_expect(run_dfa(g, "yes", 3, NULL) && run_dfa(g, "maybe", 5, NULL) && run_dfa(g, "", 0, NULL));
    cr_expect(!run_dfa(g, "ye", 2, NULL) && !run_dfa(g, "nono", 4, NULL));
    cg_unref(g);
    cr_expect_eq(cg_compile_choices(ch, lens, 0, &g, err, sizeof err), ERR_CONSTRAINT);
    const char *bad[] = {"ok", "\xff"};
    size_t blens[] = {2, 1};
    cr_expect_eq(cg_compile_choices(bad, blens, 2, &g, err, sizeof err), ERR_CONSTRAINT);
    cr_expect(strstr(err, "choice 1"), "%s", err);
}

/* ---- the builder ------------------------------------------------------------------ */

Test(constrain_builder, sharing_failures_and_inlining) {
    CgBuilder *b = cgb_new(NULL);
    CgExpr a1 = cgb_lit(b, "abc", 3), a2 = cgb_lit(b, "abc", 3);
    cr_expect_eq(a1, a2, "equal literals are one handle");
    CgExpr x = cgb_alt2(b, a1, cgb_lit(b, "d", 1)), y = cgb_alt2(b, cgb_lit(b, "d", 1), a2);
    cr_expect_eq(x, y, "alternation is order-free");
    cr_expect_eq(cgb_seq2(b, cgb_empty(b), a1), a1);
    cr_expect_eq(cgb_seq2(b, cgb_nothing(b), a1), cgb_nothing(b));
    cr_expect_eq(cgb_alt2(b, cgb_nothing(b), a1), a1);
    /* small non-recursive rules are inlined: no calls remain */
    int root = cgb_rule(b, "root"), digit = cgb_rule(b, "digit"), num = cgb_rule(b, "number");
    CgRange d = {'0', '9'};
    cgb_define(b, digit, cgb_class(b, &d, 1, false));
    cgb_define(b, num, cgb_repeat(b, cgb_ref(b, digit), 1, CG_INF));
    cgb_define(b, root, cgb_seq2(b, cgb_ref(b, num), cgb_repeat(b, cgb_seq2(b, cgb_lit(b, ",", 1), cgb_ref(b, num)), 0,
                                                                CG_INF)));
    CGrammar *g = NULL;
    char err[128];
    cr_assert_eq(cgb_build(b, root, &g, err, sizeof err), 0, "%s", err);
    cr_expect_eq(g->nrules, 1, "inlined to one rule, %d left", g->nrules);
    cr_expect(run_dfa(g, "1,23,456", 8, NULL) && !run_dfa(g, "1,", 2, NULL));
    char *dump = cg_dump(g);
    cr_expect(strstr(dump, "rule 0 'root'") && strstr(dump, "'0'-'9' -> s"), "%s", dump);
    free(dump);
    cg_unref(g);
    /* the first failure is remembered and reported by cgb_build */
    cr_expect_eq(cgb_lit(b, "\xc3", 1), -1);
    cr_expect_eq(cgb_lit(b, "ok", 2), -1, "later calls fail at once");
    cr_expect_eq(cgb_build(b, root, &g, err, sizeof err), ERR_CONSTRAINT);
    cr_expect(strstr(err, "UTF-8"), "%s", err);
    cgb_free(b);

    /* recursion keeps calls; refcounts */
    b = cgb_new(NULL);
    int list = cgb_rule(b, "list");
    CgExpr item = cgb_alt2(b, cgb_lit(b, "x", 1), cgb_ref(b, list));
    cgb_define(b, list, cgb_seq(b, (CgExpr[]){cgb_lit(b, "[", 1), cgb_repeat(b, item, 0, CG_INF), cgb_lit(b, "]", 1)}, 3));
    cr_assert_eq(cgb_build(b, list, &g, err, sizeof err), 0, "%s", err);
    cgb_free(b);
    check_invariants(g);
    cr_expect(earley_cg(g, "[x[x[]]x]", 9, NULL) && !earley_cg(g, "[x[]", 4, NULL));
    cr_expect(cg_ref(g) == g);
    cg_unref(g);
    cg_unref(g);

    /* undefined rule, empty language */
    b = cgb_new(NULL);
    int r0 = cgb_rule(b, "r0"), r1 = cgb_rule(b, "r1");
    cgb_define(b, r0, cgb_ref(b, r1));
    cr_expect_eq(cgb_build(b, r0, &g, err, sizeof err), ERR_CONSTRAINT);
    cr_expect(strstr(err, "'r1' is used but never defined"), "%s", err);
    cgb_define(b, r1, cgb_seq2(b, cgb_lit(b, "a", 1), cgb_ref(b, r1)));
    cr_expect_eq(cgb_build(b, r0, &g, err, sizeof err), ERR_CONSTRAINT);
    cr_expect(strstr(err, "matches nothing"), "%s", err);
    cgb_free(b);
}

/* ---- compiled constraints as bytes (constrain/serial.c) ------------------------- */

/* One rule "r" of two states over two classes (class 1 = byte `b1`, the
 * rest class 0): s0 --b1--> s1 (final), plus an optional call of rule 0
 * from s0 to s1; every number below 128, so each varint is one byte. */
static size_t tiny_rule(unsigned char *o, int b1, int call, int extra_dead) {
    size_t n = 0;
    int ns = 2 + extra_dead;
    o[n++] = 'C', o[n++] = 'G', o[n++] = 1;
    o[n++] = 1, o[n++] = 0;                     /* nrules, start */
    o[n++] = 1, o[n++] = 'r';                   /* name */
    o[n++] = (unsigned char)ns, o[n++] = 0, o[n++] = 2;
    for (int b = 0; b < 256; b++) o[n++] = b == b1;
    o[n++] = 0, o[n++] = 2;                     /* s0: class 0 none, class 1 -> s1 */
    for (int s = 1; s < ns; s++) o[n++] = 0, o[n++] = 0;
    o[n++] = 0, o[n++] = 1;                     /* final */
    for (int s = 2; s < ns; s++) o[n++] = 0;
    if (call) o[n++] = 1, o[n++] = 0, o[n++] = 1;
    else o[n++] = 0;
    for (int s = 1; s < ns; s++) o[n++] = 0;
    return n;
}

Test(constrain_serial, hostile_tables) {
    unsigned char buf[400];
    char err[256];
    CGrammar *g = NULL;
    size_t n = tiny_rule(buf, 'a', 0, 0);
    cr_assert_eq(cg_decode(buf, n, &g, err, sizeof err), 0, "%s", err);
    cr_assert(cg_match(g, "a", 1, NULL) && !cg_match(g, "b", 1, NULL));
    cg_unref(g);
    struct {
        int b1, call, dead;
        const char *msg;
    } bad[] = {
        {0xFF, 0, 0, "invalid UTF-8"},
        {0xC3, 0, 0, "inside a UTF-8 sequence"},     /* final after a lead byte */
        {'a', 1, 0, "left recursion"},
        {'a', 0, 1, "cannot reach an end"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = tiny_rule(buf, bad[i].b1, bad[i].call, bad[i].dead);
        cr_assert_eq(cg_decode(buf, n, &g, err, sizeof err), ERR_FORMAT, "case %zu", i);
        cr_assert_null(g);
        cr_assert(strstr(err, bad[i].msg), "case %zu: %s", i, err);
    }
    n = tiny_rule(buf, 'a', 0, 0);
    buf[n++] = 0;
    cr_assert_eq(cg_decode(buf, n, &g, err, sizeof err), ERR_FORMAT);
    cr_assert(strstr(err, "trailing bytes"), "%s", err);
}

/* Random damage to real encodings: decoding either fails cleanly or yields
 * a grammar that keeps every invariant (under ASan in `make asan`). */
Test(constrain_serial, mutations, .timeout = 120) {
    const char *src = "root ::= obj\nobj ::= \"{\" (pair (\",\" pair)*)? \"}\"\n"
                      "pair ::= [a-zé]+ \":\" (obj | [0-9]+ | \"\\\"\" [^\"]* \"\\\"\")\n";
    CGrammar *g = NULL;
    int line, col;
    char err[256];
    cr_assert_eq(cg_compile_gbnf(src, strlen(src), NULL, &g, &line, &col, err, sizeof err), 0, "%s", err);
    StrBuf b = {0};
    cr_assert_eq(cg_encode(g, &b), 0);
    rng_state = 0x51A11;
    int decoded = 0;
    for (int iter = 0; iter < 3000; iter++) {
        unsigned char *m = malloc(b.len);
        memcpy(m, b.data, b.len);
        int k = 1 + rn(3);
        for (int j = 0; j < k; j++) m[rn((int)b.len)] = (unsigned char)rnd();
        CGrammar *d = NULL;
        if (cg_decode(m, b.len, &d, err, sizeof err) == 0) {
            decoded++;
            check_invariants(d);
            cg_match(d, "{a:{b:\"x\"},c:12}", 17, NULL);
            cg_unref(d);
        } else {
            cr_assert_null(d);
            cr_assert(err[0]);
        }
        free(m);
    }
    cr_log_info("%d of 3000 mutated encodings decoded", decoded);
    sb_free(&b);
    cg_unref(g);
}
