/*
 * constrain/builder_internal.h — the CgBuilder's insides, shared by the
 * builder (builder.c: expressions, rules, regex lowering) and the compiler
 * of its rules (build.c: left recursion, NFA, DFA). Nothing outside these
 * two files includes it.
 *
 * Expressions are nodes of one array, hash-consed: a node is created once
 * per (kind, fields, kids), so equal subexpressions are one handle and a
 * handle compares for equality in O(1).
 *
 *   nodes[e]     kind   a          b          c
 *   CX_EMPTY     -      -          -          -        ids 0 and 1 are
 *   CX_NOTHING   -      -          -          -        always these two
 *   CX_BYTES     lo     hi         -                   one byte in lo..hi
 *   CX_CLASS     off    n          -                   ranges[off..off+n): sorted,
 *                                                      disjoint, scalar values
 *   CX_SEQ       off    n          -                   kids[off..off+n), n >= 2,
 *   CX_ALT       off    n          -                   no nested SEQ (ALT), no
 *                                                      EMPTY/NOTHING kid; ALT kids
 *                                                      sorted and distinct
 *   CX_REPEAT    x      min        max (CG_INF)        never x{1,1}, never {0,0}
 *   CX_REF       rule   -          -
 *
 * Invariants: kids of a node are older nodes (smaller ids), so a walk by
 * increasing id visits kids first; depth[e] = 1 + the deepest kid, capped
 * by CgLimits.max_depth * CX_DEPTH_PER_LEVEL.
 *
 * Failure memory: the first failing call sets err/msg; every later call
 * returns -1 at once and cgb_build reports the first failure.
 */
#ifndef SGL_CONSTRAIN_BUILDER_INTERNAL_H
#define SGL_CONSTRAIN_BUILDER_INTERNAL_H

#include <stdint.h>

#include "constrain/constrain.h"

enum { CX_EMPTY, CX_NOTHING, CX_BYTES, CX_CLASS, CX_SEQ, CX_ALT, CX_REPEAT, CX_REF };
enum { CX_ID_EMPTY = 0, CX_ID_NOTHING = 1 };
/* Expression levels allowed per level of CgLimits.max_depth (a group of a
 * regex or a level of a schema takes a few: seq, alt, repeat). */
enum { CX_DEPTH_PER_LEVEL = 8 };

typedef struct {
    uint8_t kind;
    int32_t a, b, c;
    int32_t depth;
    uint32_t hash;
} CxNode;

typedef struct {
    char *name;
    CgExpr body;            /* -1 until defined */
} CxRule;

struct CgBuilder {
    CgLimits lim;
    CxNode *nodes;
    int32_t nnodes, capnodes;
    int32_t *kids;
    size_t nkids, capkids;
    CgRange *ranges;
    size_t nranges, capranges;
    int32_t *htab;          /* open addressing, -1 = empty; size hcap (power of 2) */
    uint32_t hcap;
    CxRule *rules;
    int32_t nrules, caprules;
    int err;                /* first failure (0 = none) */
    char msg[256];
    int32_t fail_rule;      /* the rule cgb_build's last failure names, or -1 */
};

/* Remembers the first failure (code, message); returns -1. */
int cx_fail(CgBuilder *b, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static inline const int32_t *cx_kids(const CgBuilder *b, CgExpr e) {
    return b->kids + b->nodes[e].a;
}

/* A rule with no name check and no limit on the count (for rules build.c
 * adds: the non-empty part of a nullable rule). */
int cx_rule_named(CgBuilder *b, const char *name, const char *suffix);

/* The defaults for zero fields. */
void cx_limits(CgLimits *out, const CgLimits *in);

#endif
