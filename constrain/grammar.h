/*
 * constrain/grammar.h — the compiled form of a constraint, inside the room:
 * what cgb_build (constrain/build.c) writes and the matcher
 * (constrain/matcher.c) reads. Nothing outside constrain/ includes it.
 *
 * A CGrammar is a set of rules; each rule is a minimised DFA over bytes
 * whose states may also *call* another rule:
 *
 *      rule value:   (0) ──'"'──► (1) ──[^"\\]──► (1) ──'"'──► ((2))
 *                     │
 *                     └──call object──► ((3))
 *
 *   - byte edges: classmap[b] gives the byte's class in this rule (bytes
 *     with identical edges in every state share a class), and
 *     next[state * nclasses + class] the target state or -1;
 *   - call edges: calls[call_off[s] .. call_off[s+1]) = {rule, to}: run the
 *     callee from its start state, and when it reaches one of its final
 *     states it may return to state `to` of this rule;
 *   - final[s]: the rule may end in s (return to the caller, or accept the
 *     whole text when this is the start rule at the bottom of the stack).
 *
 * Invariants cgb_build guarantees (the matcher relies on every one):
 *   G1 rules[start] is the start rule; every call names a rule in range.
 *   G2 no left recursion: no rule can reach a call of itself (directly or
 *      through other rules) without consuming a byte, so expanding calls
 *      at one text position always terminates.
 *   G3 no dead states: every state of every rule can reach a final state
 *      (through bytes and calls whose callees can finish), so every live
 *      prefix extends to an accepted string; the language is not empty.
 *   G4 only valid UTF-8 is accepted (classes were lowered to UTF-8
 *      sequences; literals were checked).
 *   G5 nullable[r] says whether rule r accepts the empty string.
 *
 * Ownership: a CGrammar owns every array below; `refs` counts its holders
 * (atomic). Immutable after cgb_build, so any thread may read it; a mask
 * cache hung off it (mcache, the matcher's) carries its own lock.
 */
#ifndef SGL_CONSTRAIN_GRAMMAR_H
#define SGL_CONSTRAIN_GRAMMAR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "constrain/constrain.h"

typedef struct {
    int32_t rule;           /* callee */
    int32_t to;             /* state of the caller after the callee returns */
} CgCall;

typedef struct {
    char *name;
    int32_t nstates;
    int32_t start;
    int32_t nclasses;
    uint8_t classmap[256];
    int32_t *next;          /* nstates * nclasses, -1 = no edge */
    uint8_t *final;         /* nstates */
    int32_t *call_off;      /* nstates + 1 */
    CgCall *calls;          /* call_off[nstates] entries */
} CgRule;

struct CGrammar {
    atomic_int refs;
    int32_t nrules;
    int32_t start;          /* index of the start rule */
    CgRule *rules;
    uint8_t *nullable;      /* nrules */
    void *mcache;           /* the matcher's per-grammar mask cache, or NULL */
    void (*mcache_free)(void *);
};

/* G5: fills g->nullable from the rules (a byte-free path from the start to
 * a final state through calls of nullable rules). 0 or ERR_NOMEM. */
int cg_compute_nullable(CGrammar *g);

/* G2 for a finished grammar: 0, ERR_CORRUPT (message names a rule that can
 * reach a call of itself without a byte) or ERR_NOMEM. cgb_build and
 * cg_decode (constrain/serial.c) both prove it with this one check. */
int cg_check_g2(const CGrammar *g, char *err, size_t errcap);

/* Frees a grammar whatever its refcount (cg_unref calls it at zero). */
void cg_destroy(CGrammar *g);

#endif
