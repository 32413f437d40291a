/*
 * constrain/build.c — cgb_build: a CgBuilder's rules compiled into a
 * CGrammar (constrain/grammar.h) that keeps G1-G5. Also the CGrammar's
 * lifetime (cg_ref, cg_unref, cg_destroy) and cg_dump.
 *
 *   rules reachable from start ─► undefined? (error) ─► productive rules
 *   (refs to empty rules become NOTHING; empty start: error) ─► nullable
 *   ─► left recursion removed (expression level) ─► per rule, callees
 *   first: Thompson NFA over bytes + call symbols (small non-recursive
 *   callees inlined as copies of their DFA) ─► subset construction over
 *   byte intervals ─► Hopcroft minimisation (the dead sink dropped: G3)
 *   ─► byte classes ─► the rules still called, renumbered, start first.
 *
 * Bounded work (cgb_build runs on the request path): NFA states, raw and
 * minimised DFA states and subset-construction steps per rule are capped;
 * a rule that passes a cap with inlined callees is built again with calls,
 * and one that passes it with calls fails with ERR_LIMIT naming it.
 *
 * Left recursion (G2). The leading graph has an edge A → B when body(A)
 * can reach a reference to B without consuming a byte (after nullable
 * prefixes). Its cyclic strongly connected components are rewritten in
 * place, preserving every rule's language, as Paull's algorithm does:
 * order the component's rules A1..Ak; for each Ai, first substitute the
 * bodies of leading A1..A(i-1) (until none leads), then split the body as
 * Ai·α ∪ β (β with no leading Ai) and set Ai := β·α*. A nullable prefix X
 * before a leading reference splits as ε ∪ X⁺ (X⁺ = X's non-empty part;
 * for a rule, a new rule "name+"). New rules can close new cycles, so the
 * pass repeats until the graph is acyclic (a bounded number of rounds).
 *
 * Everything here is per call: no global state.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/strbuf.h"
#include "constrain/builder_internal.h"
#include "constrain/grammar.h"

/* A callee with at most this many states, not recursive, is copied into
 * its callers; a caller that grows past INLINE_CALLER_MAX states that way
 * is built again with calls. */
enum { INLINE_MAX = 512, INLINE_CALLER_MAX = 20000, LR_ROUNDS = 16 };

/* Steps of subset-construction work (NFA states visited in closures) for
 * one rule: with inlined callees (past it: built again with calls), and in
 * all (past it: ERR_LIMIT). About 5 ns a step. */
#define WORK_INLINE ((int64_t)20 * 1000 * 1000)
#define WORK_MAX ((int64_t)400 * 1000 * 1000)

/* Expression nodes the left-recursion rewrite may create before it gives up. */
enum { LR_MAX_NODES = 4 << 20 };

typedef struct {
    CgBuilder *b;
    char *err;
    size_t errcap;
    int code;                   /* first error (0 none) */
    int32_t nrules_cap;         /* capacity of the per-rule arrays below */
    uint8_t *rule_nul;          /* per rule: nullable */
    uint8_t *rule_prod;         /* per rule: productive */
    int32_t *plus;              /* per rule: its non-empty part's rule, -1 */
    uint8_t *reach;             /* per rule: reachable from start */
    /* per node */
    uint8_t *nul;
    int32_t nul_done;           /* nul[0..nul_done) are computed */
    int32_t nodes_cap;
    int32_t *memo;              /* transform memo (node -> node), with stamp */
    uint32_t *memo_stamp;
    int32_t *memo2;             /* D's β */
    uint32_t stamp;
    int32_t *nonempty;          /* node -> its non-empty part, -1 unknown */
    /* built rules (builder rule ids) */
    CgRule *built;
    uint8_t *is_built;
    uint8_t *recursive;         /* per rule: on a cycle of calls */
    int inline_ok;              /* inline small callees in the rule being built */
} Ctx;

static int fail(Ctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(Ctx *c, int code, const char *fmt, ...) {
    if (c->code) return c->code;
    c->code = code;
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(c->err, c->errcap, fmt, ap);
    va_end(ap);
    return code;
}

static int nomem(Ctx *c) { return fail(c, ERR_NOMEM, "out of memory"); }

/* The builder failed (it remembers why): take its code and message. */
static int from_builder(Ctx *c) {
    if (c->b->err) return fail(c, c->b->err, "%s", c->b->msg);
    return nomem(c);
}

static const char *rname(const Ctx *c, int r) { return c->b->rules[r].name ? c->b->rules[r].name : "?"; }

/* ---- growable arrays ----------------------------------------------------------- */

typedef struct {
    int32_t *v;
    int32_t n, cap;
} IVec;

static int iv_push(IVec *a, int32_t x) {
    if (a->n == a->cap) {
        int32_t cap = a->cap ? a->cap * 2 : 16;
        int32_t *p = realloc(a->v, (size_t)cap * sizeof *p);
        if (!p) return -1;
        a->v = p;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static int grow(void **p, size_t elem, int32_t oldn, int32_t newn, int fill) {
    void *q = realloc(*p, (size_t)newn * elem);
    if (!q) return -1;
    memset((char *)q + (size_t)oldn * elem, fill, (size_t)(newn - oldn) * elem);
    *p = q;
    return 0;
}

/* Per-rule arrays follow the builder's rule count. */
static int rules_fit(Ctx *c) {
    int32_t n = c->b->nrules;
    if (n <= c->nrules_cap) return 0;
    int32_t cap = c->nrules_cap ? c->nrules_cap : 16;
    while (cap < n) cap *= 2;
    if (grow((void **)&c->rule_nul, 1, c->nrules_cap, cap, 0) ||
        grow((void **)&c->rule_prod, 1, c->nrules_cap, cap, 0) ||
        grow((void **)&c->plus, sizeof(int32_t), c->nrules_cap, cap, 0xFF) ||
        grow((void **)&c->reach, 1, c->nrules_cap, cap, 0) ||
        grow((void **)&c->built, sizeof(CgRule), c->nrules_cap, cap, 0) ||
        grow((void **)&c->is_built, 1, c->nrules_cap, cap, 0) ||
        grow((void **)&c->recursive, 1, c->nrules_cap, cap, 0)) {
        return nomem(c);
    }
    c->nrules_cap = cap;
    return 0;
}

/* Per-node arrays follow the builder's node count. */
static int nodes_fit(Ctx *c) {
    int32_t n = c->b->nnodes;
    if (n <= c->nodes_cap) return 0;
    int32_t cap = c->nodes_cap ? c->nodes_cap : 256;
    while (cap < n) cap *= 2;
    if (grow((void **)&c->nul, 1, c->nodes_cap, cap, 0) ||
        grow((void **)&c->memo, sizeof(int32_t), c->nodes_cap, cap, 0xFF) ||
        grow((void **)&c->memo2, sizeof(int32_t), c->nodes_cap, cap, 0xFF) ||
        grow((void **)&c->memo_stamp, sizeof(uint32_t), c->nodes_cap, cap, 0) ||
        grow((void **)&c->nonempty, sizeof(int32_t), c->nodes_cap, cap, 0xFF)) {
        return nomem(c);
    }
    c->nodes_cap = cap;
    return 0;
}

/* ---- nullable, productive -------------------------------------------------------- */

/* One pass in id order (kids first) of a per-node property over the rules'
 * current values: nullable when `prod` is 0, productive when 1. */
static uint8_t node_prop(Ctx *c, CgExpr e, const uint8_t *vals, const uint8_t *rule_vals, int prod) {
    const CxNode *n = &c->b->nodes[e];
    const int32_t *k = cx_kids(c->b, e);
    switch (n->kind) {
    case CX_EMPTY: return 1;
    case CX_NOTHING: return 0;
    case CX_BYTES:
    case CX_CLASS: return (uint8_t)prod;
    case CX_REF: return rule_vals[n->a];
    case CX_REPEAT: return n->b == 0 ? 1 : vals[n->a];
    case CX_SEQ:
        for (int32_t i = 0; i < n->b; i++) {
            if (!vals[k[i]]) return 0;
        }
        return 1;
    case CX_ALT:
        for (int32_t i = 0; i < n->b; i++) {
            if (vals[k[i]]) return 1;
        }
        return 0;
    }
    return 0;
}

/* Fixpoint of a rule property (least: both grow from false). */
static int rule_fixpoint(Ctx *c, uint8_t *vals, uint8_t *rule_vals, int prod) {
    if (nodes_fit(c)) return -1;
    CgBuilder *b = c->b;
    for (;;) {
        for (CgExpr e = 0; e < b->nnodes; e++) vals[e] = node_prop(c, e, vals, rule_vals, prod);
        int changed = 0;
        for (int32_t r = 0; r < b->nrules; r++) {
            if (b->rules[r].body < 0) continue;
            uint8_t v = vals[b->rules[r].body];
            if (v != rule_vals[r]) rule_vals[r] = v, changed = 1;
        }
        if (!changed) return 0;
    }
}

/* Nullable of node e (rule nullables fixed): computes new nodes lazily. */
static int nullable(Ctx *c, CgExpr e) {
    if (e >= c->nul_done) {
        if (nodes_fit(c) || rules_fit(c)) return 0;
        for (CgExpr x = c->nul_done; x < c->b->nnodes; x++) c->nul[x] = node_prop(c, x, c->nul, c->rule_nul, 0);
        c->nul_done = c->b->nnodes;
    }
    return c->nul[e];
}

/* ---- rewriting expressions --------------------------------------------------------- */

/* A node like e with new kids (SEQ, ALT) or a new sub (REPEAT). */
static CgExpr remake(CgBuilder *b, CgExpr e, const CgExpr *kids) {
    const CxNode *n = &b->nodes[e];
    switch (n->kind) {
    case CX_SEQ: return cgb_seq(b, kids, n->b);
    case CX_ALT: return cgb_alt(b, kids, n->b);
    case CX_REPEAT: return cgb_repeat(b, kids[0], n->b, n->c);
    default: return e;
    }
}

static CgExpr *kid_buf(CgBuilder *b, CgExpr e, CgExpr *small, int cap) {
    const CxNode *n = &b->nodes[e];
    int cnt = n->kind == CX_REPEAT ? 1 : n->b;
    if (cnt <= cap) return small;
    return malloc((size_t)cnt * sizeof(CgExpr));
}

static void memo_reset(Ctx *c) {
    if (++c->stamp == 0) {
        memset(c->memo_stamp, 0, (size_t)c->nodes_cap * sizeof *c->memo_stamp);
        c->stamp = 1;
    }
}

static int memo_get(Ctx *c, CgExpr e, CgExpr *v, CgExpr *v2) {
    if (e >= c->nodes_cap || c->memo_stamp[e] != c->stamp) return 0;
    *v = c->memo[e];
    if (v2) *v2 = c->memo2[e];
    return 1;
}

static void memo_put(Ctx *c, CgExpr e, CgExpr v, CgExpr v2) {
    if (nodes_fit(c)) return;
    c->memo_stamp[e] = c->stamp;
    c->memo[e] = v;
    c->memo2[e] = v2;
}

/* Refs to unproductive rules become NOTHING. */
static CgExpr prune(Ctx *c, CgExpr e) {
    CgBuilder *b = c->b;
    CgExpr m;
    if (memo_get(c, e, &m, NULL)) return m;
    const CxNode *n = &b->nodes[e];
    CgExpr r = e;
    if (n->kind == CX_REF) {
        r = c->rule_prod[n->a] ? e : CX_ID_NOTHING;
    } else if (n->kind == CX_SEQ || n->kind == CX_ALT || n->kind == CX_REPEAT) {
        CgExpr small[16];
        CgExpr *k = kid_buf(b, e, small, 16);
        if (!k) return nomem(c), -1;
        int cnt = n->kind == CX_REPEAT ? 1 : n->b, changed = 0;
        for (int i = 0; i < cnt; i++) {
            CgExpr kid = n->kind == CX_REPEAT ? n->a : cx_kids(b, e)[i];
            k[i] = prune(c, kid);
            if (k[i] < 0) {
                if (k != small) free(k);
                return -1;
            }
            changed |= k[i] != kid;
            n = &b->nodes[e];
        }
        r = changed ? remake(b, e, k) : e;
        if (k != small) free(k);
        if (r < 0) return from_builder(c), -1;
    }
    memo_put(c, e, r, -1);
    return r;
}

/* ---- left recursion ------------------------------------------------------------------ */

static CgExpr nonempty(Ctx *c, CgExpr e);

/* The rule for the non-empty part of nullable rule r. */
static CgExpr plus_ref(Ctx *c, int r) {
    CgBuilder *b = c->b;
    if (c->plus[r] < 0) {
        int p = cx_rule_named(b, b->rules[r].name, "+");
        if (p < 0 || rules_fit(c)) return from_builder(c), -1;
        c->plus[r] = p;
        c->plus[p] = p;
        c->rule_nul[p] = 0;
        c->rule_prod[p] = 1;
        c->reach[p] = 1;
        CgExpr body = nonempty(c, b->rules[r].body);
        if (body < 0) return -1;
        b->rules[p].body = body;
    }
    CgExpr x = cgb_ref(b, c->plus[r]);
    if (x < 0) return from_builder(c), -1;
    return x;
}

/* e without the empty string. */
static CgExpr nonempty(Ctx *c, CgExpr e) {
    CgBuilder *b = c->b;
    if (!nullable(c, e)) return e;
    if (nodes_fit(c)) return -1;
    if (c->nonempty[e] >= 0) return c->nonempty[e];
    const CxNode *n = &b->nodes[e];
    CgExpr r = -1;
    switch (n->kind) {
    case CX_EMPTY:
    case CX_NOTHING: r = CX_ID_NOTHING; break;
    case CX_REF: r = plus_ref(c, n->a); break;
    case CX_REPEAT: {
        CgExpr x = n->a;
        int max = n->c;
        CgExpr xp = nonempty(c, x);
        r = xp < 0 ? -1 : cgb_repeat(b, xp, 1, max);
        break;
    }
    case CX_ALT:
    case CX_SEQ: {
        int cnt = n->b, kind = n->kind;
        IVec parts = {0};
        for (int i = 0; i < cnt && r != -2; i++) {
            CgExpr kid = cx_kids(b, e)[i];
            CgExpr kp = nonempty(c, kid);
            if (kp < 0) {
                r = -2;
                break;
            }
            if (kind == CX_ALT) {
                if (iv_push(&parts, kp)) r = -2;
                continue;
            }
            /* SEQ (all kids nullable): k_i⁺ · k_{i+1..} */
            CgExpr *rest = malloc((size_t)(cnt - i) * sizeof *rest);
            if (!rest) {
                r = -2;
                break;
            }
            rest[0] = kp;
            memcpy(rest + 1, cx_kids(b, e) + i + 1, (size_t)(cnt - i - 1) * sizeof *rest);
            CgExpr s = cgb_seq(b, rest, cnt - i);
            free(rest);
            if (s < 0 || iv_push(&parts, s)) r = -2;
        }
        if (r != -2) r = cgb_alt(b, parts.v, parts.n);
        else r = -1;
        free(parts.v);
        break;
    }
    default: r = e;
    }
    if (r < 0) {
        if (!c->code) from_builder(c);
        return -1;
    }
    if (nodes_fit(c)) return -1;
    c->nonempty[e] = r;
    return r;
}

/* Rules at leading positions of e, into out (each once: seen[] marks). */
static int leading(Ctx *c, CgExpr e, IVec *out, uint8_t *seen, uint32_t *visit, uint32_t stamp) {
    CgBuilder *b = c->b;
    if (visit[e] == stamp) return 0;
    visit[e] = stamp;
    const CxNode *n = &b->nodes[e];
    switch (n->kind) {
    case CX_REF:
        if (!seen[n->a]) {
            seen[n->a] = 1;
            if (iv_push(out, n->a)) return nomem(c);
        }
        return 0;
    case CX_REPEAT: return leading(c, n->a, out, seen, visit, stamp);
    case CX_ALT:
        for (int32_t i = 0; i < n->b; i++) {
            if (leading(c, cx_kids(b, e)[i], out, seen, visit, stamp)) return -1;
        }
        return 0;
    case CX_SEQ:
        for (int32_t i = 0; i < n->b; i++) {
            CgExpr k = cx_kids(b, e)[i];
            if (leading(c, k, out, seen, visit, stamp)) return -1;
            if (!nullable(c, k)) break;
        }
        return 0;
    default: return 0;
    }
}

/* Substitutes body(r) for every leading reference to a rule with
 * rank[r] < lim (Paull's forward substitution). */
static CgExpr subst(Ctx *c, CgExpr e, const int32_t *rank, int32_t lim) {
    CgBuilder *b = c->b;
    CgExpr m;
    if (memo_get(c, e, &m, NULL)) return m;
    const CxNode *n = &b->nodes[e];
    CgExpr r = e;
    if (n->kind == CX_REF) {
        if (rank[n->a] >= 0 && rank[n->a] < lim) r = b->rules[n->a].body;
    } else if (n->kind == CX_SEQ || n->kind == CX_ALT || n->kind == CX_REPEAT) {
        CgExpr small[16];
        CgExpr *k = kid_buf(b, e, small, 16);
        if (!k) return nomem(c), -1;
        int cnt = n->kind == CX_REPEAT ? 1 : n->b, changed = 0, lead = 1;
        for (int i = 0; i < cnt; i++) {
            CgExpr kid = n->kind == CX_REPEAT ? n->a : cx_kids(b, e)[i];
            k[i] = lead ? subst(c, kid, rank, lim) : kid;
            if (k[i] < 0) {
                if (k != small) free(k);
                return -1;
            }
            if (n->kind == CX_SEQ && !nullable(c, kid)) lead = 0;
            changed |= k[i] != kid;
            n = &b->nodes[e];
        }
        r = changed ? remake(b, e, k) : e;
        if (k != small) free(k);
        if (r < 0) return from_builder(c), -1;
    }
    memo_put(c, e, r, -1);
    return r;
}

/* Splits e as A·α ∪ β with no leading A in β (refs to other rules opaque). */
static int split(Ctx *c, CgExpr e, int A, CgExpr *alpha, CgExpr *beta) {
    CgBuilder *b = c->b;
    if (memo_get(c, e, alpha, beta)) return 0;
    const CxNode *n = &b->nodes[e];
    CgExpr al = CX_ID_NOTHING, be = e;
    switch (n->kind) {
    case CX_REF:
        if (n->a == A) al = CX_ID_EMPTY, be = CX_ID_NOTHING;
        break;
    case CX_ALT: {
        int cnt = n->b, changed = 0;
        CgExpr *as = malloc((size_t)cnt * sizeof *as), *bs = malloc((size_t)cnt * sizeof *bs);
        if (!as || !bs) {
            free(as), free(bs);
            return nomem(c);
        }
        for (int i = 0; i < cnt; i++) {
            if (split(c, cx_kids(b, e)[i], A, &as[i], &bs[i])) {
                free(as), free(bs);
                return -1;
            }
            changed |= as[i] != CX_ID_NOTHING;
        }
        if (changed) {
            al = cgb_alt(b, as, cnt);
            be = cgb_alt(b, bs, cnt);
        }
        free(as), free(bs);
        break;
    }
    case CX_SEQ: {
        int cnt = n->b, changed = 0;
        IVec als = {0}, bes = {0};
        int ended = 0, rc = 0;
        /* a copy: building nodes may move the kid pool */
        CgExpr *ks = malloc((size_t)cnt * sizeof *ks);
        if (!ks) return nomem(c);
        memcpy(ks, cx_kids(b, e), (size_t)cnt * sizeof *ks);
        for (int i = 0; i < cnt && !rc; i++) {
            CgExpr ai, bi;
            if (split(c, ks[i], A, &ai, &bi)) {
                rc = -1;
                break;
            }
            CgExpr rest = cgb_seq(b, ks + i + 1, cnt - i - 1);
            if (rest < 0) {
                rc = -1;
                break;
            }
            if (ai != CX_ID_NOTHING) {
                changed = 1;
                if (iv_push(&als, cgb_seq2(b, ai, rest))) rc = -1;
            }
            if (nullable(c, bi)) {
                CgExpr bp = nonempty(c, bi);
                if (bp < 0 || iv_push(&bes, cgb_seq2(b, bp, rest))) rc = -1;
            } else {
                if (iv_push(&bes, cgb_seq2(b, bi, rest))) rc = -1;
                ended = 1;
                break;
            }
        }
        if (!rc && !ended && iv_push(&bes, CX_ID_EMPTY)) rc = -1;
        if (!rc && changed) {
            al = cgb_alt(b, als.v, als.n);
            be = cgb_alt(b, bes.v, bes.n);
        }
        free(als.v), free(bes.v), free(ks);
        if (rc) return c->code ? -1 : from_builder(c);
        break;
    }
    case CX_REPEAT: {
        CgExpr ax, bx;
        if (split(c, n->a, A, &ax, &bx)) return -1;
        if (ax == CX_ID_NOTHING) break;
        n = &b->nodes[e];
        CgExpr x = n->a;
        int min = n->b, max = n->c;
        CgExpr y = x, ay = ax, by = bx;
        if (nullable(c, bx)) {
            /* x's β is nullable: x{m,n} = (x⁺){0,n}, and x⁺'s β is not */
            y = nonempty(c, x);
            min = 0;
            if (y < 0) return -1;
            if (split(c, y, A, &ay, &by)) return -1;
        }
        /* e = [min == 0] ε ∪ y · y{min-1, max-1} */
        CgExpr rest = cgb_repeat(b, y, min > 0 ? min - 1 : 0, max == CG_INF ? CG_INF : max - 1);
        if (rest < 0) return from_builder(c);
        al = cgb_seq2(b, ay, rest);
        be = cgb_seq2(b, by, rest);
        if (min == 0) be = cgb_alt2(b, be, CX_ID_EMPTY);
        break;
    }
    default: break;
    }
    if (al < 0 || be < 0) return from_builder(c);
    memo_put(c, e, al, be);
    *alpha = al;
    *beta = be;
    return 0;
}

/* ---- strongly connected components (iterative Tarjan) -------------------------------- */

/* Graph in CSR: edges of v are adj[off[v]..off[v+1]). comp[v] = component
 * id, numbered in reverse topological order (a component's successors get
 * smaller ids: callees first). Vertices with active[v] == 0 are skipped. */
static int tarjan(int32_t n, const int32_t *off, const int32_t *adj, const uint8_t *active, int32_t *comp,
                  int32_t *ncomp_out) {
    int32_t *index = malloc((size_t)n * sizeof *index), *low = malloc((size_t)n * sizeof *low);
    int32_t *stack = malloc((size_t)n * sizeof *stack), *cstack = malloc((size_t)n * sizeof *cstack);
    int32_t *edge = malloc((size_t)n * sizeof *edge);
    uint8_t *on = calloc((size_t)n ? (size_t)n : 1, 1);
    if (!index || !low || !stack || !cstack || !edge || !on) {
        free(index), free(low), free(stack), free(cstack), free(edge), free(on);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) index[i] = -1, comp[i] = -1;
    int32_t idx = 0, sp = 0, csp = 0, ncomp = 0;
    for (int32_t root = 0; root < n; root++) {
        if (!active[root] || index[root] >= 0) continue;
        cstack[csp++] = root;
        index[root] = low[root] = idx++;
        edge[root] = off[root];
        stack[sp++] = root;
        on[root] = 1;
        while (csp) {
            int32_t v = cstack[csp - 1];
            if (edge[v] < off[v + 1]) {
                int32_t w = adj[edge[v]++];
                if (!active[w]) continue;
                if (index[w] < 0) {
                    index[w] = low[w] = idx++;
                    edge[w] = off[w];
                    stack[sp++] = w;
                    on[w] = 1;
                    cstack[csp++] = w;
                } else if (on[w] && index[w] < low[v]) {
                    low[v] = index[w];
                }
                continue;
            }
            csp--;
            if (csp && low[v] < low[cstack[csp - 1]]) low[cstack[csp - 1]] = low[v];
            if (low[v] == index[v]) {
                int32_t w;
                do {
                    w = stack[--sp];
                    on[w] = 0;
                    comp[w] = ncomp;
                } while (w != v);
                ncomp++;
            }
        }
    }
    free(index), free(low), free(stack), free(cstack), free(edge), free(on);
    *ncomp_out = ncomp;
    return 0;
}

/* Rules reachable from start through references (reach[]). */
static int mark_reachable(Ctx *c, int start) {
    CgBuilder *b = c->b;
    if (rules_fit(c) || nodes_fit(c)) return -1;
    memset(c->reach, 0, (size_t)c->nrules_cap);
    uint8_t *seen = calloc((size_t)b->nnodes, 1);
    IVec work = {0}, stack = {0};
    if (!seen) return nomem(c);
    c->reach[start] = 1;
    int rc = iv_push(&work, start);
    while (!rc && work.n) {
        int r = work.v[--work.n];
        if (b->rules[r].body < 0) continue;
        rc |= iv_push(&stack, b->rules[r].body);
        while (!rc && stack.n) {
            CgExpr e = stack.v[--stack.n];
            if (seen[e]) continue;
            seen[e] = 1;
            const CxNode *n = &b->nodes[e];
            if (n->kind == CX_REF) {
                if (!c->reach[n->a]) c->reach[n->a] = 1, rc |= iv_push(&work, n->a);
            } else if (n->kind == CX_REPEAT) {
                rc |= iv_push(&stack, n->a);
            } else if (n->kind == CX_SEQ || n->kind == CX_ALT) {
                for (int32_t i = 0; i < n->b; i++) rc |= iv_push(&stack, cx_kids(b, e)[i]);
            }
        }
    }
    free(seen), free(work.v), free(stack.v);
    return rc ? nomem(c) : 0;
}

/* The leading graph over reachable rules, its cyclic components rewritten.
 * Returns 1 when a rewrite happened, 0 when there was no left recursion. */
static int lr_round(Ctx *c) {
    CgBuilder *b = c->b;
    int32_t nr = b->nrules;
    if (nodes_fit(c)) return -1;
    int32_t *off = calloc((size_t)nr + 1, sizeof *off);
    /* a rewrite adds at most one rule per rule (its non-empty part) */
    uint8_t *seen = calloc((size_t)nr * 2 + 2, 1);
    uint32_t *visit = calloc((size_t)b->nnodes + 1, sizeof *visit);
    IVec adj = {0}, lead = {0};
    int32_t *comp = malloc(((size_t)nr + 1) * sizeof *comp), *rank = malloc(((size_t)nr * 2 + 2) * sizeof *rank);
    int rc = 0, rewrote = 0;
    if (!off || !seen || !visit || !comp || !rank) rc = nomem(c);
    for (int32_t r = 0; r < nr && !rc; r++) {
        off[r] = adj.n;
        if (!c->reach[r] || b->rules[r].body < 0) continue;
        lead.n = 0;
        if (leading(c, b->rules[r].body, &lead, seen, visit, (uint32_t)r + 1)) rc = -1;
        for (int32_t i = 0; i < lead.n && !rc; i++) {
            seen[lead.v[i]] = 0;
            if (iv_push(&adj, lead.v[i])) rc = nomem(c);
        }
    }
    off[nr] = adj.n;
    int32_t ncomp = 0;
    if (!rc && tarjan(nr, off, adj.v, c->reach, comp, &ncomp)) rc = nomem(c);
    /* members of each component (counting sort, rule order within) */
    int32_t *cstart = rc ? NULL : calloc((size_t)ncomp + 2, sizeof *cstart);
    int32_t *members = rc ? NULL : malloc(((size_t)nr + 1) * sizeof *members);
    uint8_t *cyclic = rc ? NULL : calloc((size_t)ncomp + 1, 1);
    if (!rc && (!cstart || !members || !cyclic)) rc = nomem(c);
    for (int32_t r = 0; r < nr && !rc; r++) {
        if (comp[r] < 0) continue;
        cstart[comp[r] + 1]++;
        for (int32_t i = off[r]; i < off[r + 1]; i++) cyclic[comp[r]] |= adj.v[i] == r;
    }
    for (int32_t k = 0; k < ncomp && !rc; k++) {
        cyclic[k] |= cstart[k + 1] > 1;
        cstart[k + 1] += cstart[k];
    }
    if (!rc) {
        int32_t *pos = malloc(((size_t)ncomp + 1) * sizeof *pos);
        if (!pos) rc = nomem(c);
        else {
            memcpy(pos, cstart, ((size_t)ncomp + 1) * sizeof *pos);
            for (int32_t r = 0; r < nr; r++) {
                if (comp[r] >= 0) members[pos[comp[r]]++] = r;
            }
            free(pos);
        }
    }
    for (int32_t k = 0; k < ncomp && !rc; k++) {
        if (!cyclic[k]) continue;
        rewrote = 1;
        const int32_t *mem = members + cstart[k];
        int32_t nmem = cstart[k + 1] - cstart[k];
        /* ε out first: a nullable A becomes ε | A+ (A+ = its non-empty
         * part, whose leading references are all to non-nullable rules),
         * so the split below never meets a nullable β; the graph is
         * recomputed next round. */
        int converted = 0;
        for (int32_t i = 0; i < nmem && !rc; i++) {
            int32_t A = mem[i];
            if (!c->rule_nul[A] || c->plus[A] == A) continue;
            CgExpr pr = plus_ref(c, A);
            if (pr < 0) {
                rc = -1;
                break;
            }
            CgExpr want = cgb_alt2(b, CX_ID_EMPTY, pr);
            if (want < 0) {
                rc = from_builder(c);
                break;
            }
            if (b->rules[A].body != want) b->rules[A].body = want, converted = 1;
        }
        if (converted || rc) continue;
        for (int32_t i = 0; i < nmem; i++) rank[mem[i]] = i;
        for (int32_t i = 0; i < nmem && !rc; i++) {
            int32_t A = mem[i];
            /* forward substitution until no leading ref ranks below i */
            for (int32_t it = 0; it <= nmem && !rc; it++) {
                lead.n = 0;
                if (nodes_fit(c)) {
                    rc = -1;
                    break;
                }
                uint32_t *v2 = realloc(visit, ((size_t)b->nnodes + 1) * sizeof *v2);
                if (!v2) {
                    rc = nomem(c);
                    break;
                }
                visit = v2;
                memset(visit, 0, ((size_t)b->nnodes + 1) * sizeof *visit);
                if (leading(c, b->rules[A].body, &lead, seen, visit, 1)) {
                    rc = -1;
                    break;
                }
                int below = 0;
                for (int32_t j = 0; j < lead.n; j++) {
                    seen[lead.v[j]] = 0;
                    below |= rank[lead.v[j]] >= 0 && rank[lead.v[j]] < i;
                }
                if (!below) break;
                memo_reset(c);
                CgExpr nb = subst(c, b->rules[A].body, rank, i);
                if (nb < 0) {
                    rc = -1;
                    break;
                }
                b->rules[A].body = nb;
            }
            if (rc) break;
            memo_reset(c);
            CgExpr al, be;
            if (split(c, b->rules[A].body, A, &al, &be)) {
                rc = -1;
                break;
            }
            if (al != CX_ID_NOTHING) {
                CgExpr nb = cgb_seq2(b, be, cgb_repeat(b, al, 0, CG_INF));
                if (nb < 0) {
                    rc = from_builder(c);
                    break;
                }
                b->rules[A].body = nb;
            }
            if (b->nnodes > LR_MAX_NODES) {
                rc = fail(c, ERR_LIMIT, "left recursion through rule '%s' is too large to rewrite", rname(c, A));
            }
            if (b->nrules > 2 * nr + 1) {
                rc = fail(c, ERR_CORRUPT, "left recursion rewrite added too many rules");
            }
        }
        for (int32_t i = 0; i < nmem; i++) rank[mem[i]] = -1;
    }
    free(cstart), free(members), free(cyclic);
    free(off), free(seen), free(visit), free(adj.v), free(lead.v), free(comp), free(rank);
    if (rc) return c->code ? c->code : nomem(c);
    return rewrote;
}

/* ---- NFA ---------------------------------------------------------------------------- */

enum { E_EPS = -1, E_CALL = -2 };

typedef struct {
    int32_t from, to;
    int32_t lo, hi;             /* bytes lo..hi; lo == E_EPS; lo == E_CALL: hi = rule */
    int32_t range;              /* byte edges, set by determinize: its distinct range */
} NEdge;

typedef struct {
    int32_t n;                  /* states */
    NEdge *e;
    int32_t ne, cap;
    int32_t limit;              /* most states before it gives up */
    int over;                   /* passed the limit */
    /* CSR after nfa_index: a state's ε edges first, up to eps_end[q] */
    int32_t *off;
    int32_t *eps_end;
    NEdge *sorted;
} Nfa;

static int nfa_state(Nfa *a) {
    if (a->n >= a->limit) {
        a->over = 1;
        return 0;
    }
    return a->n++;
}

static int nfa_edge(Nfa *a, int32_t from, int32_t to, int32_t lo, int32_t hi) {
    if (a->over) return 0;
    if (a->ne == a->cap) {
        int32_t cap = a->cap ? a->cap * 2 : 256;
        NEdge *p = realloc(a->e, (size_t)cap * sizeof *p);
        if (!p) return -1;
        a->e = p;
        a->cap = cap;
    }
    a->e[a->ne++] = (NEdge){from, to, lo, hi, -1};
    return 0;
}

/* One UTF-8 byte-range sequence for the scalar values lo..hi, which share
 * an encoded length n and the split below. */
static int utf8_chain(Nfa *a, int32_t s, int32_t t, uint32_t lo, uint32_t hi, int n) {
    uint8_t bl[4], bh[4];
    char x[4], y[4];
    /* encode by hand: the values are scalar values of length n */
    for (int i = 0; i < 2; i++) {
        uint32_t cp = i ? hi : lo;
        char *o = i ? y : x;
        if (n == 1) o[0] = (char)cp;
        else if (n == 2) o[0] = (char)(0xC0 | (cp >> 6)), o[1] = (char)(0x80 | (cp & 0x3F));
        else if (n == 3) o[0] = (char)(0xE0 | (cp >> 12)), o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[2] = (char)(0x80 | (cp & 0x3F));
        else o[0] = (char)(0xF0 | (cp >> 18)), o[1] = (char)(0x80 | ((cp >> 12) & 0x3F)), o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (char)(0x80 | (cp & 0x3F));
    }
    for (int i = 0; i < n; i++) bl[i] = (uint8_t)x[i], bh[i] = (uint8_t)y[i];
    int32_t cur = s;
    for (int i = 0; i < n; i++) {
        int32_t nx = i == n - 1 ? t : nfa_state(a);
        if (nfa_edge(a, cur, nx, bl[i], bh[i])) return -1;
        cur = nx;
    }
    return 0;
}

/* Splits lo..hi (one encoded length n) until each piece is a product of
 * byte ranges: where the low 6k bits of lo are not all 0 or of hi not all 1
 * while the higher bits differ, cut there. */
static int utf8_split(Nfa *a, int32_t s, int32_t t, uint32_t lo, uint32_t hi, int n) {
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if ((lo & m) != 0) {
                return utf8_split(a, s, t, lo, lo | m, n) || utf8_split(a, s, t, (lo | m) + 1, hi, n) ? -1 : 0;
            }
            if ((hi & m) != m) {
                return utf8_split(a, s, t, lo, (hi & ~m) - 1, n) || utf8_split(a, s, t, hi & ~m, hi, n) ? -1 : 0;
            }
        }
    }
    return utf8_chain(a, s, t, lo, hi, n);
}

static int utf8_range(Nfa *a, int32_t s, int32_t t, uint32_t lo, uint32_t hi) {
    static const uint32_t top[4] = {0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    for (int n = 1; n <= 4 && lo <= hi; n++) {
        if (lo > top[n - 1]) continue;
        uint32_t h = hi < top[n - 1] ? hi : top[n - 1];
        if (utf8_split(a, s, t, lo, h, n)) return -1;
        lo = h + 1;
    }
    return 0;
}

static int emit(Ctx *c, Nfa *a, CgExpr e, int32_t s);

/* A copy of built rule r's DFA from s; returns its exit state. */
static int inline_rule(Ctx *c, Nfa *a, const CgRule *r, int32_t s) {
    int32_t base = a->n;
    for (int32_t i = 0; i < r->nstates; i++) nfa_state(a);
    int32_t t = nfa_state(a);
    if (a->over) return t;
    if (nfa_edge(a, s, base + r->start, E_EPS, 0)) return -1;
    for (int32_t q = 0; q < r->nstates; q++) {
        const int32_t *row = r->next + (size_t)q * r->nclasses;
        for (int lo = 0; lo < 256;) {
            int hi = lo;
            uint8_t k = r->classmap[lo];
            while (hi + 1 < 256 && r->classmap[hi + 1] == k) hi++;
            if (row[k] >= 0 && nfa_edge(a, base + q, base + row[k], lo, hi)) return -1;
            lo = hi + 1;
        }
        for (int32_t j = r->call_off[q]; j < r->call_off[q + 1]; j++) {
            if (nfa_edge(a, base + q, base + r->calls[j].to, E_CALL, r->calls[j].rule)) return -1;
        }
        if (r->final[q] && nfa_edge(a, base + q, t, E_EPS, 0)) return -1;
    }
    return t;
}

/* Thompson construction: e from state s; returns the state after e, or -1
 * out of memory. Loops get a fresh state, so no construct adds an edge into
 * the state it starts from. */
static int emit(Ctx *c, Nfa *a, CgExpr e, int32_t s) {
    CgBuilder *b = c->b;
    if (a->over) return s;
    const CxNode *n = &b->nodes[e];
    switch (n->kind) {
    case CX_EMPTY: return s;
    case CX_NOTHING: return nfa_state(a);
    case CX_BYTES: {
        int32_t t = nfa_state(a);
        return nfa_edge(a, s, t, n->a, n->b) ? -1 : t;
    }
    case CX_CLASS: {
        int32_t t = nfa_state(a);
        for (int32_t i = 0; i < n->b; i++) {
            const CgRange *r = &b->ranges[n->a + i];
            if (utf8_range(a, s, t, r->lo, r->hi)) return -1;
        }
        return t;
    }
    case CX_SEQ: {
        int32_t cur = s;
        for (int32_t i = 0; i < n->b && cur >= 0; i++) cur = emit(c, a, cx_kids(b, e)[i], cur);
        return cur;
    }
    case CX_ALT: {
        int32_t t = nfa_state(a);
        for (int32_t i = 0; i < n->b; i++) {
            /* no construct adds an edge into its start state, so the
             * kids may all start at s */
            int32_t end = emit(c, a, cx_kids(b, e)[i], s);
            if (end < 0 || nfa_edge(a, end, t, E_EPS, 0)) return -1;
        }
        return t;
    }
    case CX_REPEAT: {
        CgExpr x = n->a;
        int min = n->b, max = n->c;
        int32_t cur = s;
        for (int i = 0; i < min && cur >= 0 && !a->over; i++) cur = emit(c, a, x, cur);
        if (cur < 0) return -1;
        if (max == CG_INF) {
            int32_t loop = nfa_state(a);
            if (nfa_edge(a, cur, loop, E_EPS, 0)) return -1;
            int32_t end = emit(c, a, x, loop);
            if (end < 0 || nfa_edge(a, end, loop, E_EPS, 0)) return -1;
            return loop;
        }
        int32_t t = nfa_state(a);
        for (int i = min; i < max && !a->over; i++) {
            if (nfa_edge(a, cur, t, E_EPS, 0)) return -1;
            cur = emit(c, a, x, cur);
            if (cur < 0) return -1;
        }
        return nfa_edge(a, cur, t, E_EPS, 0) ? -1 : t;
    }
    case CX_REF: {
        int r = n->a;
        if (c->inline_ok && c->is_built[r] && !c->recursive[r] && c->built[r].nstates <= INLINE_MAX) {
            return inline_rule(c, a, &c->built[r], s);
        }
        int32_t t = nfa_state(a);
        return nfa_edge(a, s, t, E_CALL, r) ? -1 : t;
    }
    }
    return -1;
}

static int nfa_index(Nfa *a) {
    a->off = calloc((size_t)a->n + 1, sizeof *a->off);
    a->eps_end = calloc((size_t)a->n + 1, sizeof *a->eps_end);
    a->sorted = malloc(((size_t)a->ne + 1) * sizeof *a->sorted);
    int32_t *pos = malloc(((size_t)a->n + 1) * sizeof *pos);
    if (!a->off || !a->eps_end || !a->sorted || !pos) {
        free(pos);
        return -1;
    }
    for (int32_t i = 0; i < a->ne; i++) {
        a->off[a->e[i].from + 1]++;
        if (a->e[i].lo == E_EPS) a->eps_end[a->e[i].from]++;
    }
    for (int32_t i = 0; i < a->n; i++) a->off[i + 1] += a->off[i];
    for (int32_t q = 0; q < a->n; q++) {
        pos[q] = a->off[q] + a->eps_end[q];    /* the others after the ε edges */
        a->eps_end[q] = a->off[q];             /* the ε edges' next slot, then their end */
    }
    for (int32_t i = 0; i < a->ne; i++) {
        const NEdge *e = &a->e[i];
        if (e->lo == E_EPS) a->sorted[a->eps_end[e->from]++] = *e;
        else a->sorted[pos[e->from]++] = *e;
    }
    free(pos);
    return 0;
}

static void nfa_free(Nfa *a) {
    free(a->e);
    free(a->off);
    free(a->eps_end);
    free(a->sorted);
}

/* ---- subset construction ------------------------------------------------------------ */

typedef struct {
    int32_t n;                  /* DFA states */
    int32_t nsym;               /* byte intervals + call symbols */
    int32_t ncls;               /* byte intervals */
    uint8_t bcls[256];          /* byte -> interval */
    int32_t ncall;
    int32_t *callee;            /* call symbol -> rule */
    int32_t *next;              /* n * nsym, -1 none */
    uint8_t *final;
    int32_t start;
} Dfa;

static void dfa_free(Dfa *d) {
    free(d->callee);
    free(d->next);
    free(d->final);
    memset(d, 0, sizeof *d);
}

typedef struct {
    int32_t *pool;              /* sets, back to back */
    size_t npool, cappool;
    int32_t *soff;              /* set i = pool[soff[i] .. soff[i] + slen[i]) */
    int32_t *slen;
    uint32_t *shash;
    int32_t *htab;
    uint32_t hcap;
    int32_t n, cap;
} SetTab;

/* Order-free: a set's elements come in closure order, unsorted. */
static uint32_t set_hash(const int32_t *v, int32_t n) {
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ull;
    for (int32_t i = 0; i < n; i++) {
        uint64_t x = (uint64_t)(uint32_t)v[i] * 0xBF58476D1CE4E5B9ull;
        h += x ^ (x >> 31);
    }
    return (uint32_t)(h ^ (h >> 32));
}

/* The id of set v[0..n) (the states with mark[q] == stamp among the
 * important ones: equal-sized sets whose members are all marked are
 * equal), adding it when new (*added = 1). */
static int32_t set_find(SetTab *t, const int32_t *v, int32_t n, const uint32_t *mark, uint32_t stamp, int *added) {
    uint32_t h = set_hash(v, n);
    if ((uint32_t)(t->n + 1) * 2 > t->hcap) {
        uint32_t cap = t->hcap ? t->hcap * 2 : 256;
        int32_t *nt = malloc(cap * sizeof *nt);
        if (!nt) return -1;
        memset(nt, 0xFF, cap * sizeof *nt);
        for (int32_t i = 0; i < t->n; i++) {
            uint32_t j = t->shash[i] & (cap - 1);
            while (nt[j] >= 0) j = (j + 1) & (cap - 1);
            nt[j] = i;
        }
        free(t->htab);
        t->htab = nt;
        t->hcap = cap;
    }
    uint32_t j = h & (t->hcap - 1);
    for (; t->htab[j] >= 0; j = (j + 1) & (t->hcap - 1)) {
        int32_t i = t->htab[j];
        if (t->shash[i] != h || t->slen[i] != n) continue;
        const int32_t *w = t->pool + t->soff[i];
        int32_t k = 0;
        while (k < n && mark[w[k]] == stamp) k++;
        if (k == n) {
            *added = 0;
            return i;
        }
    }
    if (t->n == t->cap) {
        int32_t cap = t->cap ? t->cap * 2 : 64;
        int32_t *so = realloc(t->soff, (size_t)cap * sizeof *so);
        if (!so) return -1;
        t->soff = so;
        int32_t *sl = realloc(t->slen, (size_t)cap * sizeof *sl);
        if (!sl) return -1;
        t->slen = sl;
        uint32_t *sh = realloc(t->shash, (size_t)cap * sizeof *sh);
        if (!sh) return -1;
        t->shash = sh;
        t->cap = cap;
    }
    if (t->npool + (size_t)n >= t->cappool) {
        size_t cap = t->cappool ? t->cappool : 1024;
        while (cap < t->npool + (size_t)n) cap *= 2;
        int32_t *p = realloc(t->pool, cap * sizeof *p);
        if (!p) return -1;
        t->pool = p;
        t->cappool = cap;
    }
    if (n) memcpy(t->pool + t->npool, v, (size_t)n * sizeof *v);
    t->soff[t->n] = (int32_t)t->npool;
    t->slen[t->n] = n;
    t->shash[t->n] = h;
    t->npool += (size_t)n;
    t->htab[j] = t->n;
    *added = 1;
    return t->n++;
}

static void settab_free(SetTab *t) {
    free(t->pool), free(t->soff), free(t->slen), free(t->shash), free(t->htab);
}

/* ε-closure of seeds[0..n) into out (unsorted, important states only:
 * those with a byte or call edge, and the accepting state). */
static int32_t closure(const Nfa *a, const uint8_t *important, int32_t *seeds, int32_t n, int32_t *out,
                       uint32_t *mark, uint32_t stamp, int32_t *stack, int64_t *work) {
    int32_t sp = 0, m = 0;
    *work += n;
    for (int32_t i = 0; i < n; i++) {
        if (mark[seeds[i]] != stamp) mark[seeds[i]] = stamp, stack[sp++] = seeds[i];
    }
    while (sp) {
        int32_t q = stack[--sp];
        (*work)++;
        if (important[q]) out[m++] = q;
        for (int32_t i = a->off[q]; i < a->eps_end[q]; i++) {
            int32_t t = a->sorted[i].to;
            if (mark[t] != stamp) mark[t] = stamp, stack[sp++] = t;
        }
    }
    return m;
}

/* The DFA of NFA a (start 0, accepting `acc`), at most `limit` states and
 * `budget` steps of closure work (*over set past either: compile time on
 * the request path stays bounded). */
static int determinize(Ctx *c, const Nfa *a, int32_t acc, int32_t limit, int64_t budget, Dfa *d, int *over) {
    int64_t work = 0;
    memset(d, 0, sizeof *d);
    *over = 0;
    /* Byte classes: bytes covered by exactly the same edge ranges. The
     * distinct ranges (few, however many edges share them) refine one
     * class of all 256 bytes; each range then lists the classes it covers. */
    int32_t nrules = c->b->nrules;
    int32_t *callsym = malloc((size_t)nrules * sizeof *callsym);
    uint8_t *important = calloc((size_t)a->n, 1);
    uint32_t hcap = 1024, nr = 0;
    uint32_t *rkey = calloc(hcap, sizeof *rkey);       /* (lo << 8 | hi) + 1, 0 empty */
    int32_t *rid = malloc(hcap * sizeof *rid);
    IVec rlist = {0};                                   /* range index -> key */
    if (!callsym || !important || !rkey || !rid) {
        free(callsym), free(important), free(rkey), free(rid);
        return nomem(c);
    }
    memset(callsym, 0xFF, (size_t)nrules * sizeof *callsym);
    IVec callees = {0};
    int rc = 0;
    for (int32_t i = 0; i < a->ne && !rc; i++) {
        NEdge *e = &a->sorted[i];
        if (e->lo == E_EPS) continue;
        important[e->from] = 1;
        if (e->lo == E_CALL) {
            if (callsym[e->hi] < 0) {
                callsym[e->hi] = callees.n;
                if (iv_push(&callees, e->hi)) rc = nomem(c);
            }
            continue;
        }
        uint32_t key = ((uint32_t)e->lo << 8 | (uint32_t)e->hi) + 1;
        if ((nr + 1) * 2 > hcap) {
            uint32_t ncap = hcap * 2;
            uint32_t *nk = calloc(ncap, sizeof *nk);
            int32_t *ni = malloc(ncap * sizeof *ni);
            if (!nk || !ni) {
                free(nk), free(ni);
                rc = nomem(c);
                break;
            }
            for (uint32_t j = 0; j < hcap; j++) {
                if (!rkey[j]) continue;
                uint32_t q = (rkey[j] * 2654435761u) & (ncap - 1);
                while (nk[q]) q = (q + 1) & (ncap - 1);
                nk[q] = rkey[j], ni[q] = rid[j];
            }
            free(rkey), free(rid);
            rkey = nk, rid = ni, hcap = ncap;
        }
        uint32_t q = (key * 2654435761u) & (hcap - 1);
        while (rkey[q] && rkey[q] != key) q = (q + 1) & (hcap - 1);
        if (!rkey[q]) {
            rkey[q] = key, rid[q] = (int32_t)nr++;
            if (iv_push(&rlist, (int32_t)key)) rc = nomem(c);
        }
        e->range = rid[q];
    }
    free(rkey), free(rid);
    important[acc] = 1;
    int32_t ncls = 1, size[256], cnt[256], split_to[256];
    uint8_t cls[256] = {0};
    size[0] = 256;
    for (int32_t r = 0; r < rlist.n && !rc; r++) {
        int lo = (rlist.v[r] - 1) >> 8, hi = (rlist.v[r] - 1) & 0xFF;
        for (int32_t k = 0; k < ncls; k++) cnt[k] = 0, split_to[k] = -1;
        for (int b = lo; b <= hi; b++) cnt[cls[b]]++;
        int32_t n0 = ncls;
        for (int32_t k = 0; k < n0; k++) {
            if (cnt[k] && cnt[k] < size[k]) split_to[k] = ncls, size[ncls++] = cnt[k], size[k] -= cnt[k];
        }
        for (int b = lo; b <= hi; b++) {
            if (split_to[cls[b]] >= 0) cls[b] = (uint8_t)split_to[cls[b]];
        }
    }
    /* each range's classes */
    int32_t *roff = calloc((size_t)rlist.n + 1, sizeof *roff);
    IVec rcls = {0};
    if (!roff) rc = nomem(c);
    for (int32_t r = 0; r < rlist.n && !rc; r++) {
        int lo = (rlist.v[r] - 1) >> 8, hi = (rlist.v[r] - 1) & 0xFF;
        uint8_t seen[256] = {0};
        roff[r] = rcls.n;
        for (int b = lo; b <= hi && !rc; b++) {
            if (!seen[cls[b]]) {
                seen[cls[b]] = 1;
                if (iv_push(&rcls, cls[b])) rc = nomem(c);
            }
        }
    }
    if (roff) roff[rlist.n] = rcls.n;
    free(rlist.v);
    memcpy(d->bcls, cls, sizeof cls);
    d->ncls = ncls;
    d->ncall = callees.n;
    d->callee = callees.v;
    int32_t K = d->nsym = ncls + callees.n;

    SetTab tab = {0};
    IVec *bucket = calloc((size_t)K, sizeof *bucket);
    int32_t *touched = malloc((size_t)K * sizeof *touched);
    int32_t *out = malloc(((size_t)a->n + 1) * sizeof *out), *stack = malloc(((size_t)a->n + 1) * sizeof *stack);
    uint32_t *mark = calloc((size_t)a->n + 1, sizeof *mark);
    uint8_t *touched_mark = calloc((size_t)K, 1);
    int32_t capd = 0;
    uint32_t stamp = 0;
    if (!bucket || !touched || !out || !stack || !mark || !touched_mark) rc = nomem(c);
    if (!rc) {
        int32_t seed = 0, added;
        int32_t m = closure(a, important, &seed, 1, out, mark, ++stamp, stack, &work);
        if (set_find(&tab, out, m, mark, stamp, &added) < 0) rc = nomem(c);
    }
    for (int32_t ds = 0; !rc && ds < tab.n; ds++) {
        if (ds >= capd) {
            int32_t cap = capd ? capd * 2 : 64;
            int32_t *nx = realloc(d->next, (size_t)cap * (size_t)K * sizeof *nx);
            uint8_t *fi = nx ? realloc(d->final, (size_t)cap) : NULL;
            if (nx) d->next = nx;
            if (!nx || !fi) {
                rc = nomem(c);
                break;
            }
            d->final = fi;
            capd = cap;
        }
        int32_t *row = d->next + (size_t)ds * (size_t)K;
        for (int32_t k = 0; k < K; k++) row[k] = -1;
        d->final[ds] = 0;
        int32_t nt = 0;
        int32_t so = tab.soff[ds], sl = tab.slen[ds];
        for (int32_t i = 0; i < sl && !rc; i++) {
            int32_t q = tab.pool[so + i];
            if (q == acc) d->final[ds] = 1;
            for (int32_t j = a->off[q]; j < a->off[q + 1] && !rc; j++) {
                const NEdge *e = &a->sorted[j];
                if (e->lo == E_EPS) continue;
                if (e->lo == E_CALL) {
                    int32_t k = ncls + callsym[e->hi];
                    if (!touched_mark[k]) touched_mark[k] = 1, touched[nt++] = k;
                    if (iv_push(&bucket[k], e->to)) rc = nomem(c);
                    continue;
                }
                for (int32_t x = roff[e->range]; x < roff[e->range + 1]; x++) {
                    int32_t k = rcls.v[x];
                    if (!touched_mark[k]) touched_mark[k] = 1, touched[nt++] = k;
                    if (iv_push(&bucket[k], e->to)) rc = nomem(c);
                }
            }
        }
        for (int32_t t = 0; t < nt && !rc; t++) {
            int32_t k = touched[t];
            touched_mark[k] = 0;
            int32_t m = closure(a, important, bucket[k].v, bucket[k].n, out, mark, ++stamp, stack, &work);
            bucket[k].n = 0;
            int added;
            int32_t id = set_find(&tab, out, m, mark, stamp, &added);
            if (id < 0) rc = nomem(c);
            else if (added && tab.n > limit) *over = 1;
            d->next[(size_t)ds * (size_t)K + (size_t)k] = id;
            /* the set pool may have moved: so/sl are re-read below */
        }
        if (work > budget) *over = 1;
        if (*over) break;
    }
    d->n = *over ? 0 : tab.n;
    d->start = 0;
    free(roff), free(rcls.v);
    for (int32_t k = 0; bucket && k < K; k++) free(bucket[k].v);
    free(bucket), free(touched), free(out), free(stack), free(mark), free(touched_mark);
    settab_free(&tab);
    free(callsym), free(important);
    return rc;
}

/* ---- minimisation (Hopcroft) --------------------------------------------------------- */

/* Minimises d in place; the block of the dead sink (and every state that
 * cannot reach a final state) is dropped; states renumbered breadth-first
 * from the start. Returns 0, or 1 when the language is empty. */
static int minimize(Ctx *c, Dfa *d) {
    int32_t n = d->n + 1, K = d->nsym, sink = d->n;
    size_t nt = (size_t)n * (size_t)K;
    int32_t *delta = malloc(nt * sizeof *delta);
    int32_t *inv_off = calloc(nt + 1, sizeof *inv_off);
    int32_t *inv = malloc(nt * sizeof *inv);
    int32_t *elems = malloc((size_t)n * sizeof *elems), *loc = malloc((size_t)n * sizeof *loc);
    int32_t *blk = malloc((size_t)n * sizeof *blk);
    int32_t *bstart = malloc((size_t)n * sizeof *bstart), *bend = malloc((size_t)n * sizeof *bend);
    int32_t *bmark = calloc((size_t)n, sizeof *bmark);
    uint8_t *inw = calloc((size_t)n, 1);
    int32_t *work = malloc((size_t)n * sizeof *work), *touched = malloc((size_t)n * sizeof *touched);
    int32_t *split = malloc((size_t)n * sizeof *split);
    int rc = 0;
    if (!delta || !inv_off || !inv || !elems || !loc || !blk || !bstart || !bend || !bmark || !inw || !work ||
        !touched || !split) {
        rc = nomem(c);
        goto done;
    }
    for (int32_t s = 0; s < n; s++) {
        for (int32_t k = 0; k < K; k++) {
            int32_t t = s == sink ? sink : d->next[(size_t)s * K + k];
            if (t < 0) t = sink;
            delta[(size_t)s * K + k] = t;
            inv_off[(size_t)k * n + t + 1]++;
        }
    }
    for (size_t i = 0; i < nt; i++) inv_off[i + 1] += inv_off[i];
    {
        int32_t *pos = malloc(nt * sizeof *pos);
        if (!pos) {
            rc = nomem(c);
            goto done;
        }
        memcpy(pos, inv_off, nt * sizeof *pos);
        for (int32_t s = 0; s < n; s++) {
            for (int32_t k = 0; k < K; k++) inv[pos[(size_t)k * n + delta[(size_t)s * K + k]]++] = s;
        }
        free(pos);
    }
    /* initial partition: final, non-final */
    int32_t nb = 0, p = 0;
    for (int f = 1; f >= 0; f--) {
        int32_t from = p;
        for (int32_t s = 0; s < n; s++) {
            int fin = s < d->n && d->final[s];
            if (fin == f) elems[p] = s, loc[s] = p, blk[s] = nb, p++;
        }
        if (p > from) bstart[nb] = from, bend[nb] = p, nb++;
    }
    int32_t nw = 0;
    if (nb == 2) {
        int32_t small = bend[0] - bstart[0] <= bend[1] - bstart[1] ? 0 : 1;
        work[nw++] = small, inw[small] = 1;
    } else {
        work[nw++] = 0, inw[0] = 1;
    }
    int32_t *splitter = malloc((size_t)n * sizeof *splitter);
    if (!splitter) {
        rc = nomem(c);
        goto done;
    }
    while (nw) {
        int32_t B = work[--nw];
        inw[B] = 0;
        int32_t ns = bend[B] - bstart[B];
        memcpy(splitter, elems + bstart[B], (size_t)ns * sizeof *splitter);
        for (int32_t k = 0; k < K; k++) {
            int32_t ntouch = 0;
            for (int32_t i = 0; i < ns; i++) {
                int32_t t = splitter[i];
                for (int32_t j = inv_off[(size_t)k * n + t]; j < inv_off[(size_t)k * n + t + 1]; j++) {
                    int32_t s = inv[j];
                    int32_t Y = blk[s];
                    int32_t ps = loc[s], pm = bstart[Y] + bmark[Y];
                    if (ps < pm) continue;      /* already marked */
                    /* swap s to the marked front of its block */
                    int32_t other = elems[pm];
                    elems[pm] = s, loc[s] = pm;
                    elems[ps] = other, loc[other] = ps;
                    if (bmark[Y]++ == 0) touched[ntouch++] = Y;
                }
            }
            for (int32_t i = 0; i < ntouch; i++) {
                int32_t Y = touched[i];
                int32_t m = bmark[Y];
                bmark[Y] = 0;
                if (m == bend[Y] - bstart[Y]) continue;
                /* the marked front becomes block Z */
                int32_t Z = nb++;
                bstart[Z] = bstart[Y], bend[Z] = bstart[Y] + m;
                bstart[Y] += m;
                for (int32_t q = bstart[Z]; q < bend[Z]; q++) blk[elems[q]] = Z;
                if (inw[Y]) {
                    work[nw++] = Z, inw[Z] = 1;
                } else {
                    int32_t sm = bend[Z] - bstart[Z] <= bend[Y] - bstart[Y] ? Z : Y;
                    work[nw++] = sm, inw[sm] = 1;
                }
            }
        }
    }
    free(splitter);
    /* the new DFA: blocks other than the sink's, breadth-first from start */
    {
        int32_t dead = blk[sink];
        if (blk[d->start] == dead) {
            rc = 1;
            goto done;
        }
        int32_t *newid = split;     /* block -> new state */
        for (int32_t i = 0; i < nb; i++) newid[i] = -1;
        int32_t *order = touched, no = 0;
        newid[blk[d->start]] = no, order[no++] = blk[d->start];
        for (int32_t i = 0; i < no; i++) {
            int32_t rep = elems[bstart[order[i]]];
            for (int32_t k = 0; k < K; k++) {
                int32_t tb = blk[delta[(size_t)rep * K + k]];
                if (tb != dead && newid[tb] < 0) newid[tb] = no, order[no++] = tb;
            }
        }
        int32_t *nx = malloc((size_t)no * (size_t)K * sizeof *nx);
        uint8_t *fi = malloc((size_t)no);
        if (!nx || !fi) {
            free(nx), free(fi);
            rc = nomem(c);
            goto done;
        }
        for (int32_t i = 0; i < no; i++) {
            int32_t rep = elems[bstart[order[i]]];
            fi[i] = d->final[rep];
            for (int32_t k = 0; k < K; k++) {
                int32_t tb = blk[delta[(size_t)rep * K + k]];
                nx[(size_t)i * K + k] = tb == dead ? -1 : newid[tb];
            }
        }
        free(d->next), free(d->final);
        d->next = nx, d->final = fi, d->n = no, d->start = 0;
    }
done:
    free(delta), free(inv_off), free(inv), free(elems), free(loc), free(blk), free(bstart), free(bend);
    free(bmark), free(inw), free(work), free(touched), free(split);
    return rc;
}

/* ---- a rule's automaton --------------------------------------------------------------- */

/* d as a CgRule (byte intervals with equal columns merged into classes). */
static int to_rule(Ctx *c, const Dfa *d, const char *name, CgRule *out) {
    memset(out, 0, sizeof *out);
    int32_t n = d->n, K = d->nsym;
    int32_t map[256], rep[256];
    uint32_t h[256];
    int32_t nc = 0;
    for (int32_t k = 0; k < d->ncls; k++) {
        uint32_t x = 2166136261u;
        for (int32_t s = 0; s < n; s++) x = (x ^ (uint32_t)d->next[(size_t)s * K + k]) * 16777619u;
        h[k] = x;
        map[k] = -1;
        for (int32_t j = 0; j < nc && map[k] < 0; j++) {
            int32_t q = rep[j];
            if (h[q] != x) continue;
            int same = 1;
            for (int32_t s = 0; s < n && same; s++) same = d->next[(size_t)s * K + k] == d->next[(size_t)s * K + q];
            if (same) map[k] = j;
        }
        if (map[k] < 0) rep[nc] = k, map[k] = nc++;
    }
    out->name = strdup(name);
    out->nstates = n;
    out->start = d->start;
    out->nclasses = nc;
    out->next = malloc((size_t)n * (size_t)(nc ? nc : 1) * sizeof *out->next);
    out->final = malloc((size_t)n);
    out->call_off = calloc((size_t)n + 1, sizeof *out->call_off);
    if (!out->name || !out->next || !out->final || !out->call_off) return nomem(c);
    for (int b = 0; b < 256; b++) out->classmap[b] = (uint8_t)map[d->bcls[b]];
    int32_t ncalls = 0;
    for (int32_t s = 0; s < n; s++) {
        out->final[s] = d->final[s];
        for (int32_t k = 0; k < d->ncls; k++) out->next[(size_t)s * nc + map[k]] = d->next[(size_t)s * K + k];
        for (int32_t k = d->ncls; k < K; k++) ncalls += d->next[(size_t)s * K + k] >= 0;
        out->call_off[s + 1] = ncalls;
    }
    out->calls = malloc(((size_t)ncalls + 1) * sizeof *out->calls);
    if (!out->calls) return nomem(c);
    int32_t j = 0;
    for (int32_t s = 0; s < n; s++) {
        for (int32_t k = d->ncls; k < K; k++) {
            int32_t t = d->next[(size_t)s * K + k];
            if (t >= 0) out->calls[j++] = (CgCall){d->callee[k - d->ncls], t};
        }
    }
    return 0;
}

static void rule_free(CgRule *r) {
    free(r->name), free(r->next), free(r->final), free(r->call_off), free(r->calls);
    memset(r, 0, sizeof *r);
}

/* Builds rule r (callees it inlines already built) into c->built[r]. */
static int build_rule(Ctx *c, int r) {
    CgBuilder *b = c->b;
    int32_t cap = b->lim.max_dfa_states;
    for (int attempt = 0; attempt < 2; attempt++) {
        c->inline_ok = attempt == 0;
        int32_t limit = c->inline_ok ? (cap < INLINE_CALLER_MAX ? cap : INLINE_CALLER_MAX) : cap;
        Nfa a = {0};
        a.limit = limit * 16 + 1024;
        int32_t s0 = nfa_state(&a);
        int32_t acc = emit(c, &a, b->rules[r].body, s0);
        if (acc < 0 || (!a.over && nfa_index(&a))) {
            nfa_free(&a);
            return nomem(c);
        }
        if (a.over) {
            nfa_free(&a);
            if (c->inline_ok) continue;
            return fail(c, ERR_LIMIT, "rule '%s' needs more than %d automaton states (max_dfa_states %d)",
                        rname(c, r), a.limit, cap);
        }
        Dfa d;
        int over;
        int rc = determinize(c, &a, acc, limit * 2, c->inline_ok ? WORK_INLINE : WORK_MAX, &d, &over);
        nfa_free(&a);
        if (rc) {
            dfa_free(&d);
            return rc;
        }
        if (!over) {
            rc = minimize(c, &d);
            if (rc < 0) {
                dfa_free(&d);
                return c->code;
            }
            if (rc == 1) {
                dfa_free(&d);
                return fail(c, ERR_CONSTRAINT, "rule '%s' matches nothing", rname(c, r));
            }
            over = d.n > limit;
        }
        if (over) {
            dfa_free(&d);
            if (c->inline_ok) continue;
            return fail(c, ERR_LIMIT, "rule '%s' needs more than %d automaton states (max_dfa_states) or "
                        "too much work to build", rname(c, r), cap);
        }
        rc = to_rule(c, &d, rname(c, r), &c->built[r]);
        dfa_free(&d);
        if (rc) return rc;
        c->is_built[r] = 1;
        return 0;
    }
    return fail(c, ERR_LIMIT, "rule '%s' needs more than %d automaton states", rname(c, r), cap);
}

/* G5: a rule is nullable when a byte-free path through calls of nullable
 * rules leads from its start to a final state (least fixpoint). */
int cg_compute_nullable(CGrammar *g) {
    int32_t maxn = 1;
    for (int32_t r = 0; r < g->nrules; r++) maxn = g->rules[r].nstates > maxn ? g->rules[r].nstates : maxn;
    uint8_t *seen = malloc((size_t)maxn);
    int32_t *stack = malloc((size_t)maxn * sizeof *stack);
    if (!seen || !stack) return free(seen), free(stack), ERR_NOMEM;
    memset(g->nullable, 0, (size_t)g->nrules);
    for (int changed = 1; changed;) {
        changed = 0;
        for (int32_t r = 0; r < g->nrules; r++) {
            if (g->nullable[r]) continue;
            const CgRule *R = &g->rules[r];
            memset(seen, 0, (size_t)R->nstates);
            int32_t n = 0;
            stack[n++] = R->start;
            seen[R->start] = 1;
            while (n && !g->nullable[r]) {
                int32_t s = stack[--n];
                if (R->final[s]) g->nullable[r] = 1;
                for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) {
                    int32_t to = R->calls[j].to;
                    if (g->nullable[R->calls[j].rule] && !seen[to]) seen[to] = 1, stack[n++] = to;
                }
            }
            changed |= g->nullable[r];
        }
    }
    free(seen), free(stack);
    return 0;
}

/* ---- G2 check -------------------------------------------------------------------------- */

/* Fails when some rule can reach a call of itself without a byte. */
int cg_check_g2(const CGrammar *g, char *err, size_t errcap) {
    int32_t nr = g->nrules;
    IVec adj = {0}, stack = {0};
    int32_t *off = calloc((size_t)nr + 1, sizeof *off);
    uint8_t *act = malloc((size_t)nr ? (size_t)nr : 1);
    int rc = off && act ? 0 : -1;
    for (int32_t r = 0; r < nr && !rc; r++) {
        const CgRule *R = &g->rules[r];
        off[r] = adj.n;
        act[r] = 1;
        uint8_t *seen = calloc((size_t)R->nstates, 1);
        if (!seen) {
            rc = -1;
            break;
        }
        stack.n = 0;
        seen[R->start] = 1;
        rc |= iv_push(&stack, R->start);
        while (!rc && stack.n) {
            int32_t s = stack.v[--stack.n];
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) {
                rc |= iv_push(&adj, R->calls[j].rule);
                if (g->nullable[R->calls[j].rule] && !seen[R->calls[j].to]) {
                    seen[R->calls[j].to] = 1;
                    rc |= iv_push(&stack, R->calls[j].to);
                }
            }
        }
        free(seen);
    }
    if (rc) {
        free(off), free(act), free(adj.v), free(stack.v);
        return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
    }
    off[nr] = adj.n;
    int32_t *comp = malloc((size_t)nr * sizeof *comp), ncomp = 0;
    int32_t *size = calloc((size_t)nr + 1, sizeof *size);
    if (!comp || !size || tarjan(nr, off, adj.v, act, comp, &ncomp)) rc = ERR_NOMEM, err_fmt(err, errcap, "out of memory");
    for (int32_t r = 0; r < nr && !rc; r++) size[comp[r]]++;
    for (int32_t r = 0; r < nr && !rc; r++) {
        int bad = size[comp[r]] > 1;
        for (int32_t i = off[r]; i < off[r + 1]; i++) bad |= adj.v[i] == r;
        if (bad) rc = ERR_CORRUPT, err_fmt(err, errcap, "left recursion remains through rule '%s'", g->rules[r].name);
    }
    free(off), free(act), free(adj.v), free(stack.v), free(comp), free(size);
    return rc;
}

/* Productive rules (c->rule_prod, computed afresh); references to the
 * reachable rules that derive nothing become NOTHING and reachability is
 * recomputed. An unproductive start rule is the empty-language error.
 * 0, or -1 with c->code set. */
static int prune_unproductive(Ctx *c, int start) {
    CgBuilder *b = c->b;
    uint8_t *prod = calloc((size_t)b->nnodes + 1, 1);
    if (!prod || nodes_fit(c)) {
        free(prod);
        nomem(c);
        return -1;
    }
    memset(c->rule_prod, 0, (size_t)c->nrules_cap);
    rule_fixpoint(c, prod, c->rule_prod, 1);
    free(prod);
    if (!c->rule_prod[start]) {
        fail(c, ERR_CONSTRAINT, "rule '%s' matches nothing: the language is empty", rname(c, start));
        b->fail_rule = start;
        return -1;
    }
    int any_dead = 0;
    for (int32_t r = 0; r < b->nrules; r++) any_dead |= c->reach[r] && !c->rule_prod[r];
    if (!any_dead) return 0;
    memo_reset(c);
    for (int32_t r = 0; r < b->nrules; r++) {
        if (!c->reach[r] || !c->rule_prod[r]) continue;
        CgExpr nb = prune(c, b->rules[r].body);
        if (nb < 0) return -1;
        b->rules[r].body = nb;
    }
    return mark_reachable(c, start) ? -1 : 0;
}

/* ---- cgb_build ------------------------------------------------------------------------- */

int cgb_build(CgBuilder *b, int start, CGrammar **out, char *err, size_t errcap) {
    if (out) *out = NULL;
    if (err && errcap) err[0] = '\0';
    if (!b || !out) return err_fmt(err, errcap, "cgb_build: no builder or no output"), ERR_ARG;
    if (b->err) return err_fmt(err, errcap, "%s", b->msg), b->err;
    if (start < 0 || start >= b->nrules) return err_fmt(err, errcap, "start rule %d was not declared", start), ERR_ARG;
    b->fail_rule = -1;
    Ctx cx = {.b = b, .err = err, .errcap = errcap};
    Ctx *c = &cx;
    CGrammar *g = NULL;
    int32_t *order = NULL, *comp = NULL, *off = NULL, *newidx = NULL;
    IVec adj = {0}, keep = {0};
    int rc = 0;

    if (mark_reachable(c, start)) goto out;
    for (int32_t r = 0; r < b->nrules; r++) {
        if (c->reach[r] && b->rules[r].body < 0) {
            fail(c, ERR_CONSTRAINT, "rule '%s' is used but never defined", rname(c, r));
            b->fail_rule = r;
            goto out;
        }
    }
    /* productive rules; refs to the others become NOTHING */
    if (prune_unproductive(c, start)) goto out;
    if (nodes_fit(c) || rules_fit(c)) goto out;
    rule_fixpoint(c, c->nul, c->rule_nul, 0);
    c->nul_done = b->nnodes;

    /* left recursion */
    for (int round = 0;; round++) {
        int r = lr_round(c);
        if (r < 0 || c->code) goto out;
        if (r == 0) break;
        if (mark_reachable(c, start)) goto out;
        if (round == LR_ROUNDS) {
            fail(c, ERR_LIMIT, "left recursion in rule '%s' could not be removed in %d rounds", rname(c, start),
                 LR_ROUNDS);
            goto out;
        }
    }
    if (rules_fit(c) || nodes_fit(c)) goto out;
    /* the rewrite may leave rules that derive nothing (the non-empty part
     * of a rule that only derives ε): prune them again */
    if (prune_unproductive(c, start)) goto out;

    /* call graph over reachable rules; components callees first */
    int32_t nr = b->nrules;
    {
        off = calloc((size_t)nr + 1, sizeof *off);
        comp = malloc((size_t)nr * sizeof *comp);
        uint8_t *seen = calloc((size_t)nr, 1);
        uint32_t *visit = calloc((size_t)b->nnodes + 1, sizeof *visit);
        IVec refs = {0}, stack = {0};
        if (!off || !comp || !seen || !visit) rc = -1;
        for (int32_t r = 0; r < nr && !rc; r++) {
            off[r] = adj.n;
            if (!c->reach[r]) continue;
            refs.n = 0;
            stack.n = 0;
            rc |= iv_push(&stack, b->rules[r].body);
            while (!rc && stack.n) {
                CgExpr e = stack.v[--stack.n];
                if (visit[e] == (uint32_t)r + 1) continue;
                visit[e] = (uint32_t)r + 1;
                const CxNode *n = &b->nodes[e];
                if (n->kind == CX_REF) {
                    if (!seen[n->a]) seen[n->a] = 1, rc |= iv_push(&refs, n->a);
                } else if (n->kind == CX_REPEAT) {
                    rc |= iv_push(&stack, n->a);
                } else if (n->kind == CX_SEQ || n->kind == CX_ALT) {
                    for (int32_t i = 0; i < n->b; i++) rc |= iv_push(&stack, cx_kids(b, e)[i]);
                }
            }
            for (int32_t i = 0; i < refs.n; i++) {
                seen[refs.v[i]] = 0;
                rc |= iv_push(&adj, refs.v[i]);
            }
        }
        if (!rc) off[nr] = adj.n;
        free(seen), free(visit), free(refs.v), free(stack.v);
        int32_t ncomp = 0;
        if (rc || tarjan(nr, off, adj.v, c->reach, comp, &ncomp)) {
            nomem(c);
            goto out;
        }
        int32_t *csize = calloc((size_t)ncomp + 1, sizeof *csize);
        order = malloc((size_t)nr * sizeof *order);
        if (!csize || !order) {
            free(csize);
            nomem(c);
            goto out;
        }
        for (int32_t r = 0; r < nr; r++) {
            if (comp[r] >= 0) csize[comp[r]]++;
        }
        for (int32_t r = 0; r < nr; r++) {
            if (comp[r] < 0) continue;
            c->recursive[r] = csize[comp[r]] > 1;
            for (int32_t i = off[r]; i < off[r + 1]; i++) c->recursive[r] |= adj.v[i] == r;
        }
        /* by component id: callees first (counting sort) */
        int32_t *cstart = calloc((size_t)ncomp + 1, sizeof *cstart);
        if (!cstart) {
            free(csize);
            nomem(c);
            goto out;
        }
        for (int32_t k = 0; k < ncomp; k++) cstart[k + 1] = cstart[k] + csize[k];
        int32_t norder = cstart[ncomp];
        for (int32_t r = 0; r < nr; r++) {
            if (comp[r] >= 0) order[cstart[comp[r]]++] = r;
        }
        free(cstart), free(csize);
        for (int32_t i = 0; i < norder; i++) {
            if (build_rule(c, order[i])) {
                b->fail_rule = order[i];
                goto out;
            }
        }
    }

    /* the rules still called, from start; start becomes rule 0 */
    newidx = malloc((size_t)nr * sizeof *newidx);
    if (!newidx) {
        nomem(c);
        goto out;
    }
    for (int32_t r = 0; r < nr; r++) newidx[r] = -1;
    newidx[start] = 0;
    if (iv_push(&keep, start)) {
        nomem(c);
        goto out;
    }
    for (int32_t i = 0; i < keep.n; i++) {
        const CgRule *R = &c->built[keep.v[i]];
        for (int32_t j = 0; j < R->call_off[R->nstates]; j++) {
            int32_t callee = R->calls[j].rule;
            if (newidx[callee] < 0) {
                newidx[callee] = keep.n;
                if (iv_push(&keep, callee)) {
                    nomem(c);
                    goto out;
                }
            }
        }
    }
    g = calloc(1, sizeof *g);
    if (!g || !(g->rules = calloc((size_t)keep.n, sizeof *g->rules)) ||
        !(g->nullable = calloc((size_t)keep.n, 1))) {
        nomem(c);
        goto out;
    }
    atomic_init(&g->refs, 1);
    g->nrules = keep.n;
    g->start = 0;
    for (int32_t i = 0; i < keep.n; i++) {
        CgRule *R = &c->built[keep.v[i]];
        g->rules[i] = *R;
        memset(R, 0, sizeof *R);
        c->is_built[keep.v[i]] = 0;
        CgRule *G = &g->rules[i];
        for (int32_t j = 0; j < G->call_off[G->nstates]; j++) G->calls[j].rule = newidx[G->calls[j].rule];
    }
    if (cg_compute_nullable(g)) {
        nomem(c);
        goto out;
    }
    if ((rc = cg_check_g2(g, c->err, c->errcap)) != 0) {
        c->code = rc;
        goto out;
    }

out:
    if (c->code) {
        rc = c->code;
        if (g) cg_destroy(g);
        g = NULL;
    }
    for (int32_t r = 0; r < c->nrules_cap; r++) {
        if (c->is_built && c->is_built[r]) rule_free(&c->built[r]);
    }
    free(c->rule_nul), free(c->rule_prod), free(c->plus), free(c->reach), free(c->built), free(c->is_built);
    free(c->recursive), free(c->nul), free(c->memo), free(c->memo_stamp), free(c->memo2), free(c->nonempty);
    free(order), free(comp), free(off), free(newidx), free(adj.v), free(keep.v);
    if (!rc) *out = g;
    return rc;
}

/* ---- lifetime -------------------------------------------------------------------------- */

void cg_destroy(CGrammar *g) {
    if (!g) return;
    if (g->mcache && g->mcache_free) g->mcache_free(g->mcache);
    for (int32_t i = 0; g->rules && i < g->nrules; i++) rule_free(&g->rules[i]);
    free(g->rules);
    free(g->nullable);
    free(g);
}

CGrammar *cg_ref(CGrammar *g) {
    if (g) atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    return g;
}

void cg_unref(CGrammar *g) {
    if (g && atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1) cg_destroy(g);
}

/* ---- dump ------------------------------------------------------------------------------ */

static void put_byte(StrBuf *o, int c) {
    if (c >= 0x21 && c < 0x7F && c != '\'' && c != '\\' && c != '-') sb_printf(o, "'%c'", c);
    else sb_printf(o, "%02X", c);
}

/* rule 0 'root' (3 states, 4 classes, nullable)
 *   s0: 'a'-'c' -> s1, call 1 'value' -> s2
 *   s1 final: ...                                                             */
char *cg_dump(const CGrammar *g) {
    StrBuf o = {0};
    for (int32_t r = 0; r < g->nrules; r++) {
        const CgRule *R = &g->rules[r];
        sb_printf(&o, "rule %d '%s' (%d states, %d classes%s%s)\n", r, R->name, R->nstates, R->nclasses,
                  g->nullable[r] ? ", nullable" : "", r == g->start ? ", start" : "");
        for (int32_t s = 0; s < R->nstates; s++) {
            sb_printf(&o, "  s%d%s%s:", s, s == R->start ? " start" : "", R->final[s] ? " final" : "");
            const int32_t *row = R->next + (size_t)s * R->nclasses;
            int first = 1;
            /* byte edges grouped by target, in byte order of first appearance */
            uint8_t done[256] = {0};
            for (int b0 = 0; b0 < 256; b0++) {
                int32_t t = row[R->classmap[b0]];
                if (t < 0 || done[b0]) continue;
                sb_appends(&o, first ? " " : ", ");
                first = 0;
                int sep = 0;
                for (int lo = b0; lo < 256;) {
                    if (row[R->classmap[lo]] != t) {
                        lo++;
                        continue;
                    }
                    int hi = lo;
                    while (hi + 1 < 256 && row[R->classmap[hi + 1]] == t) hi++;
                    for (int k = lo; k <= hi; k++) done[k] = 1;
                    if (sep) sb_appendc(&o, ' ');
                    sep = 1;
                    put_byte(&o, lo);
                    if (hi > lo) {
                        sb_appendc(&o, '-');
                        put_byte(&o, hi);
                    }
                    lo = hi + 1;
                }
                sb_printf(&o, " -> s%d", t);
            }
            for (int32_t j = R->call_off[s]; j < R->call_off[s + 1]; j++) {
                sb_appends(&o, first ? " " : ", ");
                first = 0;
                sb_printf(&o, "call %d '%s' -> s%d", R->calls[j].rule, g->rules[R->calls[j].rule].name,
                          R->calls[j].to);
            }
            sb_appendc(&o, '\n');
        }
    }
    if (o.oom) {
        sb_free(&o);
        return NULL;
    }
    return sb_detach(&o);
}
