/*
 * tests/fuzz/fuzz_constrain.c — libFuzzer target over the compile side of
 * constrain/: the first byte picks the front end, the rest is its text.
 *
 *   'r' regex (cg_compile_regex)      'g' GBNF (cg_compile_gbnf)
 *   'e' EBNF (cg_compile_ebnf)        'c' GBNF under small caps (CgLimits)
 *   'b' the bytes of a compiled grammar (cg_decode, as .sglc files carry)
 *   anything else: the text goes to all three front ends
 *
 * A compile must never crash, leak (ASan's leak check) or hang; a grammar
 * that compiles must keep G1-G5 as far as the tables show them (indices in
 * range, every state live, a final start state nullable), dump, and come
 * back unchanged through cg_encode / cg_decode; a failure must leave a
 * NUL-terminated message and no grammar. Whatever cg_decode accepts keeps
 * the same checks. A violation aborts.
 *
 * Build and run: `make fuzz-constrain` (FUZZ_SECONDS=N); seeds in
 * tests/fuzz/constrain_seeds/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"
#include "constrain/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "fuzz_constrain: %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static void check_grammar(const CGrammar *g) {
    CHECK(g->nrules >= 1 && g->start >= 0 && g->start < g->nrules);
    for (int32_t r = 0; r < g->nrules; r++) {
        const CgRule *R = &g->rules[r];
        CHECK(R->nstates >= 1 && R->start >= 0 && R->start < R->nstates);
        CHECK(R->nclasses >= 1 && R->nclasses <= 256);
        for (int b = 0; b < 256; b++) CHECK(R->classmap[b] < R->nclasses);
        for (int64_t i = 0; i < (int64_t)R->nstates * R->nclasses; i++) {
            CHECK(R->next[i] >= -1 && R->next[i] < R->nstates);
        }
        for (int32_t s = 0; s < R->nstates; s++) {
            CHECK(R->call_off[s] <= R->call_off[s + 1]);
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) {
                CHECK(R->calls[j].rule >= 0 && R->calls[j].rule < g->nrules);
                CHECK(R->calls[j].to >= 0 && R->calls[j].to < R->nstates);
            }
        }
        if (R->final[R->start]) CHECK(g->nullable[r]);
        /* every state live: a search backwards from the final states over
         * reversed byte and call edges (callees all finish: their own check) */
        int32_t ns = R->nstates;
        size_t ne = (size_t)ns * (size_t)R->nclasses + (size_t)R->call_off[ns];
        int32_t *off = calloc((size_t)ns + 1, sizeof *off), *src = malloc((ne + 1) * sizeof *src);
        int32_t *stack = malloc(((size_t)ns + 1) * sizeof *stack), sp = 0;
        uint8_t *live = calloc((size_t)ns, 1);
        CHECK(off && src && stack && live);
        for (int32_t s = 0; s < ns; s++) {
            for (int32_t k = 0; k < R->nclasses; k++) {
                int32_t t = R->next[(size_t)s * R->nclasses + k];
                if (t >= 0) off[t + 1]++;
            }
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) off[R->calls[j].to + 1]++;
        }
        for (int32_t s = 0; s < ns; s++) off[s + 1] += off[s];
        int32_t *pos = malloc(((size_t)ns + 1) * sizeof *pos);
        CHECK(pos);
        memcpy(pos, off, ((size_t)ns + 1) * sizeof *pos);
        for (int32_t s = 0; s < ns; s++) {
            for (int32_t k = 0; k < R->nclasses; k++) {
                int32_t t = R->next[(size_t)s * R->nclasses + k];
                if (t >= 0) src[pos[t]++] = s;
            }
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) src[pos[R->calls[j].to]++] = s;
        }
        for (int32_t s = 0; s < ns; s++) {
            if (R->final[s]) live[s] = 1, stack[sp++] = s;
        }
        while (sp) {
            int32_t t = stack[--sp];
            for (int32_t j = off[t]; j < off[t + 1]; j++) {
                if (!live[src[j]]) live[src[j]] = 1, stack[sp++] = src[j];
            }
        }
        free(off), free(src), free(stack), free(pos);
        for (int32_t s = 0; s < R->nstates; s++) CHECK(live[s]);
        free(live);
    }
    char *d = cg_dump(g);
    CHECK(d);
    free(d);
}

/* encode → decode is the identity on what cgb_build makes */
static void check_roundtrip(const CGrammar *g) {
    StrBuf b = {0};
    CHECK(cg_encode(g, &b) == 0);
    CGrammar *d = NULL;
    char err[256];
    CHECK(cg_decode(b.data, b.len, &d, err, sizeof err) == 0);
    char *x = cg_dump(g), *y = cg_dump(d);
    CHECK(x && y && strcmp(x, y) == 0);
    free(x), free(y);
    cg_unref(d);
    sb_free(&b);
}

static void decode(const uint8_t *p, size_t n) {
    CGrammar *g = (CGrammar *)&g;
    char err[256];
    memset(err, 'x', sizeof err);
    if (cg_decode(p, n, &g, err, sizeof err) == 0) {
        CHECK(g);
        check_grammar(g);
        cg_match(g, "{\"a\": [1, 2]}", 14, NULL);
        cg_unref(g);
    } else {
        CHECK(!g && memchr(err, '\0', sizeof err));
    }
}

static void one(int mode, const char *s, size_t n) {
    CGrammar *g = (CGrammar *)&g;     /* must be reset to NULL on failure */
    char err[256];
    memset(err, 'x', sizeof err);
    int pos = -1, line = -1, col = -1, rc;
    CgLimits small = {.max_repeat = 20, .max_dfa_states = 2000, .max_rules = 64, .max_depth = 20};
    CgLimits fuzz = {.max_repeat = 200, .max_dfa_states = 20000};
    switch (mode) {
    case 'r': rc = cg_compile_regex(s, n, &fuzz, &g, &pos, err, sizeof err); break;
    case 'g': rc = cg_compile_gbnf(s, n, &fuzz, &g, &line, &col, err, sizeof err); break;
    case 'e': rc = cg_compile_ebnf(s, n, &fuzz, &g, &line, &col, err, sizeof err); break;
    default: rc = cg_compile_gbnf(s, n, &small, &g, &line, &col, err, sizeof err); break;
    }
    if (rc == 0) {
        CHECK(g);
        check_grammar(g);
        check_roundtrip(g);
        cg_unref(g);
    } else {
        CHECK(rc < 0 && !g);
        CHECK(memchr(err, '\0', sizeof err));
        if (mode == 'r') CHECK(pos >= 0 && (size_t)pos <= n);
        else CHECK(line >= 1 && col >= 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    int mode = data[0];
    if (mode == 'b') {
        decode(data + 1, n);
    } else if (mode == 'r' || mode == 'g' || mode == 'e' || mode == 'c') {
        one(mode, s, n);
    } else {
        one('r', s, n);
        one('g', s, n);
        one('e', s, n);
    }
    return 0;
}
