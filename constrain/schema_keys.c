/*
 * constrain/schema_keys.c — member names of patternProperties: the names
 * in a region of the patterns (matching these, not those, none of the
 * declared names) as a grammar fragment.
 *
 * Each pattern (and the universe of encoded names, and the set of declared
 * names) is compiled on its own to a byte DFA by cgb_build; the region is
 * their product, with "not" taken by complementing finality. The product
 * is emitted back into the caller's builder as right-linear rules, one per
 * live product state:
 *
 *      R(q1,q2,..) = "" (if final) | [lo-hi] R(next...) | ...
 *
 * so the builder re-minimises it with everything else. Complement is what
 * the builder's expressions cannot say; this is the one place that needs it.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "constrain/grammar.h"
#include "constrain/schema_int.h"

enum { MAX_PRODUCT = 4000 };

static int step(const CgRule *r, int q, int byte) {
    if (q < 0) return -1;
    int c = r->classmap[byte];
    return r->next[(size_t)q * (size_t)r->nclasses + (size_t)c];
}

static bool is_final(const CgRule *r, int q) { return q >= 0 && r->final[q]; }

int sk_region(CgBuilder *b, CGrammar *const *gs, const bool *neg, int n, const char *name, CgExpr *out,
              bool *empty, char *err, size_t errcap) {
    const CgRule **rs = malloc((size_t)n * sizeof *rs);
    int *states = malloc((size_t)MAX_PRODUCT * (size_t)n * sizeof *states);
    int *edges = malloc((size_t)MAX_PRODUCT * 256 * sizeof *edges);
    int rc = 0, ns = 0;
    bool *live = NULL;
    int *rule_of = NULL;
    *empty = false;
    if (!rs || !states || !edges) {
        rc = ERR_NOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        rs[i] = &gs[i]->rules[gs[i]->start];
        if (rs[i]->call_off[rs[i]->nstates] != 0) {
            err_fmt(err, errcap, "patternProperties: a pattern compiled to calls");
            rc = ERR_UNSUPPORTED;
            goto done;
        }
        states[i] = rs[i]->start;
    }
    ns = 1;
    for (int s = 0; s < ns; s++) {
        for (int byte = 0; byte < 256; byte++) {
            int nx[16];
            bool any_pos_dead = false;
            for (int i = 0; i < n; i++) {
                nx[i] = step(rs[i], states[s * n + i], byte);
                if (!neg[i] && nx[i] < 0) any_pos_dead = true;
            }
            if (any_pos_dead) {
                edges[s * 256 + byte] = -1;
                continue;
            }
            int t;
            for (t = 0; t < ns; t++)
                if (!memcmp(&states[t * n], nx, (size_t)n * sizeof *nx)) break;
            if (t == ns) {
                if (ns == MAX_PRODUCT) {
                    err_fmt(err, errcap, "patternProperties: the patterns need more than %d states together", MAX_PRODUCT);
                    rc = ERR_LIMIT;
                    goto done;
                }
                memcpy(&states[ns * n], nx, (size_t)n * sizeof *nx);
                ns++;
            }
            edges[s * 256 + byte] = t;
        }
    }
    /* live: a final state is reachable */
    live = calloc((size_t)ns, 1);
    rule_of = malloc((size_t)ns * sizeof *rule_of);
    if (!live || !rule_of) {
        rc = ERR_NOMEM;
        goto done;
    }
    for (int s = 0; s < ns; s++) {
        bool f = true;
        for (int i = 0; i < n; i++) f &= neg[i] ? !is_final(rs[i], states[s * n + i]) : is_final(rs[i], states[s * n + i]);
        live[s] = f;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (int s = 0; s < ns; s++) {
            if (live[s]) continue;
            for (int byte = 0; byte < 256; byte++) {
                int t = edges[s * 256 + byte];
                if (t >= 0 && live[t]) {
                    live[s] = true;
                    changed = true;
                    break;
                }
            }
        }
    }
    if (!live[0]) {
        *empty = true;
        *out = cgb_nothing(b);
        goto done;
    }
    for (int s = 0; s < ns; s++) rule_of[s] = live[s] ? cgb_rule(b, name) : -1;
    for (int s = 0; s < ns; s++) {
        if (!live[s]) continue;
        CgExpr alts[257];
        int k = 0;
        bool f = true;
        for (int i = 0; i < n; i++) f &= neg[i] ? !is_final(rs[i], states[s * n + i]) : is_final(rs[i], states[s * n + i]);
        if (f) alts[k++] = cgb_empty(b);
        int byte = 0;
        while (byte < 256) {
            int t = edges[s * 256 + byte];
            if (t < 0 || !live[t]) {
                byte++;
                continue;
            }
            int e = byte;
            while (e + 1 < 256 && edges[s * 256 + e + 1] == t) e++;
            alts[k++] = cgb_seq2(b, cgb_byte_range(b, (uint8_t)byte, (uint8_t)e), cgb_ref(b, rule_of[t]));
            byte = e + 1;
        }
        cgb_define(b, rule_of[s], cgb_alt(b, alts, k));
    }
    *out = cgb_ref(b, rule_of[0]);
done:
    free(rs);
    free(states);
    free(edges);
    free(live);
    free(rule_of);
    if (rc == ERR_NOMEM) err_fmt(err, errcap, "out of memory");
    return rc;
}
