/*
 * tests/unit/script_backend.h — a scripted model backend (runtime/rt.h) for
 * unit tests: no model, deterministic answers, and a record of what the VM
 * asked for and when.
 *
 * Answers: gen requests take the next scripted string (script_push) in
 * submission order; with the script empty, a request whose prompt ends
 * with a rule's suffix (script_rule) gets that rule's answer; otherwise the
 * answer is "gen<N>" (N = submission number, from 0). select requests take
 * the next scripted index (script_push_select) or 0; scores are -(i+1).
 *
 * Completion happens only inside wait(), oldest request first, `batch`
 * requests per call (default 1; 0 = all in flight). For each completion the
 * number of requests in flight just before it is recorded, so a test can
 * check that a fork put all its branches' calls in flight before the first
 * one completed.
 *
 * Nothing here calls into libsgl, so linking this file into every test
 * binary costs nothing.
 */
#ifndef SGL_TESTS_SCRIPT_BACKEND_H
#define SGL_TESTS_SCRIPT_BACKEND_H

#include <stddef.h>

#include "runtime/rt.h"

typedef struct ScriptBackend ScriptBackend;

/* One submitted request, as the backend saw it (copies). */
typedef struct {
    int is_select;
    char *prompt;               /* prompt text */
    int nsegs;
    RtSegment segs[8];
    int max_tokens;
    double temperature;
    int nstop;
    char *stop[8];
    RtConstraintKind constraint;
    char *constraint_src;
    char *compiled_dump;        /* cg_dump of RtGenParams.compiled, or NULL */
    int logprobs;
    int nchoices;
    char *choices[8];
    RtSelectMethod method;
    int in_flight_at_completion;   /* -1 until completed */
} ScriptRequest;

ScriptBackend *script_new(void);
void script_free(ScriptBackend *sb);
RtBackend *script_backend(ScriptBackend *sb);

void script_push(ScriptBackend *sb, const char *answer);
void script_push_select(ScriptBackend *sb, int best);
void script_rule(ScriptBackend *sb, const char *prompt_suffix, const char *answer);
/* Make the next submit fail (returns non-zero with last_error set). */
void script_fail_next_submit(ScriptBackend *sb, const char *msg);
/* Make the next completion report an error (status != 0). */
void script_fail_next_result(ScriptBackend *sb, const char *msg);
void script_set_batch(ScriptBackend *sb, int batch);
/* Per-token logprobs reported for gen results (copied; n <= 16). */
void script_set_logprobs(ScriptBackend *sb, const double *lp, int n);

int script_nrequests(const ScriptBackend *sb);
const ScriptRequest *script_request(const ScriptBackend *sb, int i);
int script_in_flight(const ScriptBackend *sb);
int script_max_in_flight(const ScriptBackend *sb);

#endif
