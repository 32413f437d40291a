/*
 * runtime/rt_engine.h — the VM's model backend (runtime/rt.h) over the
 * engine (runtime/engine.h).
 *
 * Owns: the RtBackend table and its context, the conversion of the VM's
 * requests and results to and from the engine's types (RtGenParams ->
 * SampParams, RtSelectMethod -> EngSelectMethod, whose scoring
 * eng_select_scores does), and the token records it hands the VM's prompt
 * states (below). Does
 * not own: the Engine (borrowed; it must outlive this backend), chat
 * templates (the VM renders roles into the prompt text itself, with an SGL
 * template from stdlib/chat/; chat_template() only hands it the
 * tokenizer's Jinja template so that it can pick one; RtPrompt.segs is not
 * read here).
 *
 *   VM fiber ── gen/select ──► rt_engine ── eng_submit / eng_score ──► engine thread
 *   VM wait() ◄── callback ◄── eng_wait (pumps completions on the VM thread)
 *
 * Token records. The VM sends prompts as text. Re-tokenizing text the model
 * generated would give different tokens at times (and miss the radix cache
 * from there on), so every finished gen hands the VM, in RtGenResult.tokens,
 * a record for the prompt's state: "prompt text + generated text -> prompt
 * ids + generated ids" (only the generated ids that lie wholly inside the
 * returned text), with the earlier such marks of that state that its prompt
 * started with. The VM keeps it on the state and passes it back in
 * RtPrompt.tokens; a prompt that starts with a marked text reuses its ids
 * and tokenizes only the rest (no BOS), any other prompt is tokenized whole
 * (with the model's BOS). A forked state shares its parent's record.
 * Records are this RtEngine's own (another backend's or another RtEngine's
 * are ignored) and outlive it: they hold no pointer to it.
 *
 * gen's `choices` constraint runs as a select (token_length_normalized) and
 * returns the best choice's text; the other constraints (regex, json,
 * grammar, ebnf, type) are compiled by runtime/rt_constrain.c (the last 32
 * kept by source text) and every token of the gen is masked by them in the
 * engine. A bad constraint fails that gen with a message naming it.
 *
 * Threads: the backend is used from one thread (the VM's), which is also
 * where the callbacks run (inside wait()).
 */
#ifndef SGL_RUNTIME_RT_ENGINE_H
#define SGL_RUNTIME_RT_ENGINE_H

#include "runtime/engine.h"
#include "runtime/rt.h"

typedef struct RtEngine RtEngine;

typedef struct {
    int token_cache_entries;    /* marks kept per state's token record, the
                                   oldest dropped first (default 256; 0 keeps
                                   the default) */
} RtEngineOptions;

/* NULL on no memory (message in err). */
RtEngine *rt_engine_new(Engine *e, const RtEngineOptions *o, char *err, size_t errcap);
/* Requests still in flight get no callback after this: call it when the VM
 * is done (wait() returned -1). */
void rt_engine_free(RtEngine *r);

/* The table to hand to sgl_vm_set_backend; owned by the RtEngine. */
RtBackend *rt_engine_backend(RtEngine *r);

/* Requests submitted through this backend whose callback has not run. */
int rt_engine_pending(const RtEngine *r);

/* Blocks until any completion of the engine (anyone's: this backend's or
 * another user's) has been delivered or, while a request of this backend
 * streams (RtGenParams.on_delta), a piece of its text. 0, or -1 when
 * nothing is in flight in the engine. The lazy runtime's wait
 * (runtime/runtime.c) is this. */
int rt_engine_wait_any(RtEngine *r);

/* The sampling fields of a VM request as the engine's SampParams (what gen
 * submits; public for tests). Stop strings stay with the caller; EOS ids
 * come from the model, so eos_ids/n_eos are left as they were; the
 * stop_token_ids pointer is borrowed as SampParams says. */
void rt_engine_sampling(SampParams *p, const RtGenParams *rt);

#endif
