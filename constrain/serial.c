/*
 * constrain/serial.c — a CGrammar as bytes, and back (cg_encode, cg_decode),
 * so that the compiler can store a program's constraint literals compiled
 * in its .sglc and the VM never compiles them again.
 *
 * Layout (all counts and state numbers LEB128 varints, `next` entries as
 * target + 1 so that "no edge" is 0):
 *
 *   "CG" u8 version=1 | nrules | start |
 *   per rule: name (len, bytes) | nstates | start | nclasses |
 *             classmap: 256 bytes | next: nstates * nclasses entries |
 *             final: nstates bytes (0/1) | per state: ncalls, (rule, to)*
 *
 * `nullable` and the mask cache are not stored: nullable is recomputed.
 *
 * cg_decode trusts nothing. Every count is checked against the bytes left
 * before anything is allocated, every index against its range, and then the
 * invariants of constrain/grammar.h that the matcher relies on are proved
 * again on the decoded tables before the grammar is returned:
 *   G1 the start rule and every callee in range (checked while reading);
 *   G5 nullable recomputed (least fixpoint over byte-free paths);
 *   G3 every state of every rule can reach a final state through bytes and
 *      calls of rules that can finish, and every called rule can finish;
 *   G4 only valid UTF-8: a walk of (state, UTF-8 decoder state) pairs from
 *      every rule's start finds no invalid byte sequence, no call and no
 *      final state in the middle of a code point;
 *   G2 no left recursion (cg_check_g2, the same check cgb_build makes).
 * So a hostile .sglc can describe a different language than its source
 * text, as its bytecode can compute a different program, but never one the
 * matcher cannot walk safely.
 */
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar.h"
#include "base/err.h"
#include "base/strbuf.h"

#define CG_SERIAL_VERSION 1
#define MAX_NAME 4096

/* ---- writing ----------------------------------------------------------------------- */

static void put_uv(StrBuf *o, uint64_t v) {
    do {
        unsigned char b = (unsigned char)(v & 0x7F);
        v >>= 7;
        if (v) b |= 0x80;
        sb_appendc(o, (char)b);
    } while (v);
}

int cg_encode(const CGrammar *g, StrBuf *o) {
    if (!g || !o) return ERR_ARG;
    size_t at = o->len;
    sb_append(o, "CG", 2);
    sb_appendc(o, CG_SERIAL_VERSION);
    put_uv(o, (uint64_t)g->nrules);
    put_uv(o, (uint64_t)g->start);
    for (int32_t r = 0; r < g->nrules; r++) {
        const CgRule *R = &g->rules[r];
        size_t nl = R->name ? strlen(R->name) : 0;
        put_uv(o, nl);
        sb_append(o, R->name ? R->name : "", nl);
        put_uv(o, (uint64_t)R->nstates);
        put_uv(o, (uint64_t)R->start);
        put_uv(o, (uint64_t)R->nclasses);
        sb_append(o, (const char *)R->classmap, 256);
        size_t nn = (size_t)R->nstates * (size_t)R->nclasses;
        for (size_t i = 0; i < nn; i++) put_uv(o, (uint64_t)(R->next[i] + 1));
        sb_append(o, (const char *)R->final, (size_t)R->nstates);
        for (int32_t s = 0; s < R->nstates; s++) {
            put_uv(o, (uint64_t)(R->call_off[s + 1] - R->call_off[s]));
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) {
                put_uv(o, (uint64_t)R->calls[j].rule);
                put_uv(o, (uint64_t)R->calls[j].to);
            }
        }
    }
    if (o->oom) {
        sb_truncate(o, at);
        return ERR_NOMEM;
    }
    return 0;
}

/* ---- reading ----------------------------------------------------------------------- */

typedef struct {
    const unsigned char *p, *end;
    int failed;
    char *err;
    size_t errcap;
} Rd;

static int rd_fail(Rd *r, const char *what) {
    if (!r->failed) err_fmt(r->err, r->errcap, "bad compiled constraint: %s", what);
    r->failed = 1;
    return ERR_FORMAT;
}

static uint64_t get_uv(Rd *r) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return rd_fail(r, "truncated"), 0;
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return v;
    }
    return rd_fail(r, "overlong number"), 0;
}

/* A count that must lie in [0, max] and, times `unit` bytes, fit in what is left. */
static int32_t get_count(Rd *r, uint64_t max, size_t unit, const char *what) {
    uint64_t v = get_uv(r);
    if (r->failed) return 0;
    if (v > max || (unit && v > (uint64_t)(r->end - r->p) / unit)) return rd_fail(r, what), 0;
    return (int32_t)v;
}

/* The UTF-8 decoder as a table: state 0 is "between code points"; -1 an
 * invalid sequence (the Unicode Standard's table 3-7 of well-formed bytes). */
static int utf8_step(int u, unsigned b) {
    switch (u) {
    case 0:
        if (b < 0x80) return 0;
        if (b >= 0xC2 && b <= 0xDF) return 1;
        if (b == 0xE0) return 4;
        if (b == 0xED) return 5;
        if (b >= 0xE1 && b <= 0xEF) return 2;
        if (b == 0xF0) return 6;
        if (b >= 0xF1 && b <= 0xF3) return 3;
        if (b == 0xF4) return 7;
        return -1;
    case 1: return b >= 0x80 && b <= 0xBF ? 0 : -1;
    case 2: return b >= 0x80 && b <= 0xBF ? 1 : -1;
    case 3: return b >= 0x80 && b <= 0xBF ? 2 : -1;
    case 4: return b >= 0xA0 && b <= 0xBF ? 1 : -1;
    case 5: return b >= 0x80 && b <= 0x9F ? 1 : -1;
    case 6: return b >= 0x90 && b <= 0xBF ? 2 : -1;
    case 7: return b >= 0x80 && b <= 0x8F ? 2 : -1;
    }
    return -1;
}

/* G3: `live` per rule-state; productive rules are those whose start is live. */
static int check_live(const CGrammar *g, Rd *rd) {
    uint8_t **live = calloc((size_t)g->nrules, sizeof *live);
    uint8_t *prod = calloc((size_t)g->nrules, 1);
    int rc = live && prod ? 0 : ERR_NOMEM;
    for (int32_t r = 0; r < g->nrules && !rc; r++)
        if (!(live[r] = calloc((size_t)g->rules[r].nstates, 1))) rc = ERR_NOMEM;
    for (int changed = 1; changed && !rc;) {
        changed = 0;
        for (int32_t r = 0; r < g->nrules; r++) {
            const CgRule *R = &g->rules[r];
            for (int32_t s = 0; s < R->nstates; s++) {
                if (live[r][s]) continue;
                int ok = R->final[s];
                for (int32_t c = 0; c < R->nclasses && !ok; c++) {
                    int32_t t = R->next[(size_t)s * (size_t)R->nclasses + (size_t)c];
                    ok = t >= 0 && live[r][t];
                }
                for (int32_t j = R->call_off[s]; j < R->call_off[s + 1] && !ok; j++)
                    ok = prod[R->calls[j].rule] && live[r][R->calls[j].to];
                if (ok) {
                    live[r][s] = 1;
                    changed = 1;
                    if (s == R->start) prod[r] = 1;
                }
            }
        }
    }
    for (int32_t r = 0; r < g->nrules && !rc; r++) {
        const CgRule *R = &g->rules[r];
        for (int32_t s = 0; s < R->nstates && !rc; s++) {
            if (!live[r][s]) rc = rd_fail(rd, "a state that cannot reach an end");
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1] && !rc; j++)
                if (!prod[R->calls[j].rule]) rc = rd_fail(rd, "a call of a rule that cannot finish");
        }
    }
    for (int32_t r = 0; live && r < g->nrules; r++) free(live[r]);
    free(live), free(prod);
    return rc;
}

/* G4: walk (state, decoder state) pairs; bit u of seen[s] = reached in u. */
static int check_utf8(const CGrammar *g, Rd *rd) {
    int rc = 0;
    for (int32_t r = 0; r < g->nrules && !rc; r++) {
        const CgRule *R = &g->rules[r];
        uint8_t *seen = calloc((size_t)R->nstates, 1);
        int32_t *stack = malloc((size_t)R->nstates * 8 * sizeof *stack);
        if (!seen || !stack) {
            free(seen), free(stack);
            return ERR_NOMEM;
        }
        int32_t n = 0;
        /* the start, and every state a call returns to, lie between code points */
        seen[R->start] |= 1;
        stack[n++] = R->start * 8;
        for (int32_t s = 0; s < R->nstates; s++)
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) {
                int32_t to = R->calls[j].to;
                if (!(seen[to] & 1)) seen[to] |= 1, stack[n++] = to * 8;
            }
        while (n && !rc) {
            int32_t s = stack[--n] / 8, u = stack[n] % 8;
            if (u != 0 && (R->final[s] || R->call_off[s + 1] > R->call_off[s])) {
                rc = rd_fail(rd, "an end or a call inside a UTF-8 sequence");
                break;
            }
            for (unsigned b = 0; b < 256; b++) {
                int32_t t = R->next[(size_t)s * (size_t)R->nclasses + R->classmap[b]];
                if (t < 0) continue;
                int v = utf8_step(u, b);
                if (v < 0) {
                    rc = rd_fail(rd, "accepts invalid UTF-8");
                    break;
                }
                if (!(seen[t] & (1u << v))) seen[t] |= (uint8_t)(1u << v), stack[n++] = t * 8 + v;
            }
        }
        free(seen), free(stack);
    }
    return rc;
}

static int read_rule(Rd *rd, CGrammar *g, CgRule *R) {
    int32_t nl = get_count(rd, MAX_NAME, 1, "rule name too long");
    if (rd->failed) return ERR_FORMAT;
    if (!(R->name = malloc((size_t)nl + 1))) return ERR_NOMEM;
    memcpy(R->name, rd->p, (size_t)nl);
    R->name[nl] = 0;
    rd->p += nl;
    /* each state needs at least its final byte and its call count */
    R->nstates = get_count(rd, INT32_MAX / 8, 2, "state count");
    R->start = get_count(rd, INT32_MAX, 0, "start state");
    R->nclasses = get_count(rd, 256, 0, "class count");
    if (rd->failed) return ERR_FORMAT;
    if (R->nstates < 1 || R->start >= R->nstates || R->nclasses < 1) return rd_fail(rd, "empty rule");
    if ((size_t)(rd->end - rd->p) < 256) return rd_fail(rd, "truncated");
    memcpy(R->classmap, rd->p, 256);
    rd->p += 256;
    for (int b = 0; b < 256; b++)
        if (R->classmap[b] >= R->nclasses) return rd_fail(rd, "byte class out of range");
    size_t nn = (size_t)R->nstates * (size_t)R->nclasses;
    if (nn > (size_t)(rd->end - rd->p)) return rd_fail(rd, "transition table truncated");
    R->next = malloc(nn * sizeof *R->next);
    R->final = malloc((size_t)R->nstates);
    R->call_off = malloc(((size_t)R->nstates + 1) * sizeof *R->call_off);
    if (!R->next || !R->final || !R->call_off) return ERR_NOMEM;
    for (size_t i = 0; i < nn && !rd->failed; i++) {
        uint64_t t = get_uv(rd);
        if (t > (uint64_t)R->nstates) return rd_fail(rd, "transition out of range");
        R->next[i] = (int32_t)t - 1;
    }
    if (rd->failed) return ERR_FORMAT;
    if ((size_t)(rd->end - rd->p) < (size_t)R->nstates) return rd_fail(rd, "truncated");
    for (int32_t s = 0; s < R->nstates; s++) {
        if (rd->p[s] > 1) return rd_fail(rd, "bad final flag");
        R->final[s] = rd->p[s];
    }
    rd->p += R->nstates;
    size_t cap = 0;
    int32_t total = 0;
    R->call_off[0] = 0;
    for (int32_t s = 0; s < R->nstates; s++) {
        int32_t k = get_count(rd, INT32_MAX, 2, "call count");
        if (rd->failed) return ERR_FORMAT;
        if (k > INT32_MAX - total) return rd_fail(rd, "too many calls");
        if ((size_t)(total + k) > cap) {
            size_t nc = cap ? cap : 8;
            while (nc < (size_t)(total + k)) nc *= 2;
            CgCall *c = realloc(R->calls, nc * sizeof *c);
            if (!c) return ERR_NOMEM;
            R->calls = c;
            cap = nc;
        }
        for (int32_t j = 0; j < k; j++) {
            uint64_t rule = get_uv(rd), to = get_uv(rd);
            if (rd->failed) return ERR_FORMAT;
            if (rule >= (uint64_t)g->nrules || to >= (uint64_t)R->nstates) return rd_fail(rd, "call out of range");
            R->calls[total + j].rule = (int32_t)rule;
            R->calls[total + j].to = (int32_t)to;
        }
        total += k;
        R->call_off[s + 1] = total;
    }
    return 0;
}

int cg_decode(const void *buf, size_t n, CGrammar **out, char *err, size_t errcap) {
    if (out) *out = NULL;
    if (err && errcap) err[0] = '\0';
    if (!buf || !out) return ERR_ARG;
    Rd rd = {.p = buf, .end = (const unsigned char *)buf + n, .err = err, .errcap = errcap};
    if (n < 3 || memcmp(buf, "CG", 2) != 0) return rd_fail(&rd, "not a compiled constraint");
    if (rd.p[2] != CG_SERIAL_VERSION) return rd_fail(&rd, "another format version");
    rd.p += 3;
    CGrammar *g = calloc(1, sizeof *g);
    if (!g) return ERR_NOMEM;
    atomic_init(&g->refs, 1);
    int rc = 0;
    /* each rule needs at least 256 + 6 bytes */
    int32_t nr = get_count(&rd, 100000, 262, "rule count");
    g->start = get_count(&rd, INT32_MAX, 0, "start rule");
    if (rd.failed) rc = ERR_FORMAT;
    else if (nr < 1 || g->start >= nr) rc = rd_fail(&rd, "start rule out of range");
    if (!rc) {
        g->rules = calloc((size_t)nr, sizeof *g->rules);
        g->nullable = calloc((size_t)nr, 1);
        if (!g->rules || !g->nullable) rc = ERR_NOMEM;
        else g->nrules = nr;
    }
    for (int32_t r = 0; r < g->nrules && !rc; r++) rc = read_rule(&rd, g, &g->rules[r]);
    if (!rc && rd.p != rd.end) rc = rd_fail(&rd, "trailing bytes");
    if (!rc) rc = cg_compute_nullable(g);
    if (!rc) rc = check_live(g, &rd);
    if (!rc) rc = check_utf8(g, &rd);
    if (!rc) {
        char why[200];
        if ((rc = cg_check_g2(g, why, sizeof why)) == ERR_NOMEM) {
        } else if (rc) {
            rc = rd_fail(&rd, why);
        }
    }
    if (rc == ERR_NOMEM) err_fmt(err, errcap, "out of memory");
    if (rc) {
        cg_destroy(g);
        return rc;
    }
    *out = g;
    return 0;
}
