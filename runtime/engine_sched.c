/*
 * runtime/engine_sched.c — the engine's scheduler (engine thread only): the
 * waiting and running lists, admission, retraction and finishing.
 *
 * Owns: which sequences run (admission by longest cached prefix, ties by
 * arrival, within the KV budget; in-batch prefix sharing), taking a
 * sequence back out (retraction), the radix-tree side of a sequence
 * (match, lock, insert, release), and finishing sequences and requests
 * (collecting a score request's logprobs), and the pace of mixed steps
 * (how many prompt tokens join decode tokens). Does not own: building the batch
 * and the forward pass (engine_step.c), the queues and delivery
 * (engine.c). engine.h states the scheduling rules.
 */
#include "runtime/engine_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the tree side of a sequence (engine thread) ------------------------------ */

static int list_remove(Seq **arr, int *n, Seq *s)
{
    for (int i = 0; i < *n; i++)
        if (arr[i] == s) {
            memmove(arr + i, arr + i + 1, (size_t)(*n - i - 1) * sizeof *arr);
            (*n)--;
            return 1;
        }
    return 0;
}

/* Gives the sequence's slots back: with the cache on, the computed tokens
 * go into the tree (so a retried or later request finds them) and the lock
 * is dropped; the rest is freed. Leaves the sequence with no slots. */
static void seq_release(Engine *e, Seq *s)
{
    if (e->opt.prefix_cache) {
        if (s->n_kv > 0) {
            RadixNode *last;
            if (radix_insert(e->tree, s->toks, s->slots, s->n_kv, &last) < 0) {
                /* No memory for the tree: free what we hold instead. */
                radix_free_slots(e->tree, s->slots + s->tree_len, s->n_kv - s->tree_len);
            }
        }
        if (s->n_alloc > s->n_kv) radix_free_slots(e->tree, s->slots + s->n_kv, s->n_alloc - s->n_kv);
        if (s->node) radix_unlock(e->tree, s->node);
    } else {
        radix_free_slots(e->tree, s->slots, s->n_alloc);
    }
    s->node = NULL;
    s->n_alloc = s->n_kv = s->tree_len = 0;
}

/* After a prefill chunk: put the computed prefix in the tree and move the
 * lock to its end, so that other sequences can share it right away. */
void sched_checkpoint(Engine *e, Seq *s)
{
    if (!e->opt.prefix_cache || s->n_kv <= s->tree_len) return;
    RadixNode *last;
    if (radix_insert(e->tree, s->toks, s->slots, s->n_kv, &last) < 0) return;   /* stays held */
    radix_lock(e->tree, last);
    if (s->node) radix_unlock(e->tree, s->node);
    s->node = last;
    s->tree_len = s->n_kv;
}

/* How much of the sequence the cache may provide: all but the tokens whose
 * logits are needed. */
static int seq_match_cap(const Seq *s)
{
    int cap = s->n_toks;
    if (seq_samples(s)) cap = s->n_toks - 1;
    if (s->lp_from >= 1 && s->lp_from - 1 < cap) cap = s->lp_from - 1;
    return cap;
}

/* ---- finishing ------------------------------------------------------------------ */

static void spawn_choices(Engine *e, Req *r);

void sched_finish(Engine *e, Seq *s, EngFinish why)
{
    Req *r = s->req;
    eng_flight_forget(e, s);
    if (s->state == SEQ_RUNNING) {
        seq_release(e, s);
        list_remove(e->running, &e->n_running, s);
    } else if (s->state == SEQ_WAITING) {
        list_remove(e->waiting, &e->n_waiting, s);
    }
    s->state = SEQ_DONE;
    s->finish = why;
    r->seqs_left--;
    if (r->kind == REQ_GEN) {
        const char *text;
        size_t len;
        if (!s->stopped_text && detok_flush(s->dt, &text, &len) >= 0) eng_publish_delta(e, s, text, len);
        eng_mark_complete(e, r);
        return;
    }
    /* score: collect the sequence's logprobs */
    if (why == ENG_FINISH_ERROR || why == ENG_FINISH_CANCELLED) {
        if (!r->status) {
            r->status = why == ENG_FINISH_CANCELLED ? ERR_CANCELLED : ERR_MODEL;
            if (why == ENG_FINISH_CANCELLED) snprintf(r->error, sizeof r->error, "request cancelled");
        }
    } else if (s->kind == SEQ_CHOICE) {
        for (int j = 0; j < r->clen[s->choice]; j++) r->clp[s->choice][j] = s->in_lp[r->n_prompt + j];
    } else if (s->kind == SEQ_UNCOND) {
        r->culp[s->choice][0] = 0;
        for (int j = 1; j < r->clen[s->choice]; j++) r->culp[s->choice][j] = s->in_lp[j];
    }
    if (s->kind == SEQ_PROMPT && !r->status) spawn_choices(e, r);
    if (r->status && !r->cancelled) {
        /* one failed: the others will not be looked at */
        r->cancelled = 1;
        for (int i = 0; i < r->n_seqs; i++) {
            Seq *o = r->seqs[i];
            if (o->state == SEQ_WAITING || o->state == SEQ_RUNNING) sched_finish(e, o, ENG_FINISH_CANCELLED);
            else if (o->state == SEQ_NEW) {
                o->state = SEQ_DONE;
                r->seqs_left--;
            }
        }
    }
    if (r->seqs_left == 0) eng_mark_complete(e, r);
}

void sched_fail(Engine *e, Seq *s, int code, const char *msg)
{
    Req *r = s->req;
    if (!r->status) {
        r->status = code;
        snprintf(r->error, sizeof r->error, "%s", msg);
    }
    sched_finish(e, s, ENG_FINISH_ERROR);
}

static int enqueue_waiting(Engine *e, Seq *s, int front)
{
    if (grow_ptrs((void ***)&e->waiting, &e->cap_waiting, e->n_waiting + 1)) return ERR_NOMEM;
    if (front) {
        memmove(e->waiting + 1, e->waiting, (size_t)e->n_waiting * sizeof *e->waiting);
        e->waiting[0] = s;
    } else {
        e->waiting[e->n_waiting] = s;
    }
    e->n_waiting++;
    s->state = SEQ_WAITING;
    if (!s->arrival) s->arrival = ++e->arrivals;
    return 0;
}

static void spawn_choices(Engine *e, Req *r)
{
    if (r->spawned) return;
    r->spawned = 1;
    for (int i = 0; i < r->n_seqs; i++) {
        Seq *s = r->seqs[i];
        if (s->state != SEQ_NEW) continue;
        if (enqueue_waiting(e, s, 0)) {
            sched_fail(e, s, ERR_NOMEM, "out of memory");
            return;
        }
    }
}

void sched_start_req(Engine *e, Req *r)
{
    if (grow_ptrs((void ***)&e->active, &e->cap_active, e->n_active + 1)) {
        r->status = ERR_NOMEM;
        snprintf(r->error, sizeof r->error, "out of memory");
        for (int i = 0; i < r->n_seqs; i++) r->seqs[i]->finish = ENG_FINISH_ERROR;
        eng_mark_complete(e, r);
        return;
    }
    e->active[e->n_active++] = r;
    for (int i = 0; i < r->n_seqs; i++) {
        Seq *s = r->seqs[i];
        /* a score request's choices wait for its prompt when there is one */
        if (r->kind == REQ_SCORE && s->kind != SEQ_PROMPT && r->seqs[0]->kind == SEQ_PROMPT) continue;
        if (enqueue_waiting(e, s, 0)) {
            sched_fail(e, s, ERR_NOMEM, "out of memory");
            return;
        }
    }
    if (r->kind == REQ_SCORE && r->seqs[0]->kind != SEQ_PROMPT) r->spawned = 1;
}

void sched_cancel_req(Engine *e, Req *r)
{
    if (r->cancelled) return;
    r->cancelled = 1;
    if (r->kind == REQ_SCORE && !r->status) {
        r->status = ERR_CANCELLED;
        snprintf(r->error, sizeof r->error, "request cancelled");
    }
    for (int i = 0; i < r->n_seqs; i++) {
        Seq *s = r->seqs[i];
        if (s->state == SEQ_WAITING || s->state == SEQ_RUNNING) {
            sched_finish(e, s, ENG_FINISH_CANCELLED);
        } else if (s->state == SEQ_NEW) {
            s->state = SEQ_DONE;
            r->seqs_left--;
        }
    }
    if (r->seqs_left == 0) eng_mark_complete(e, r);
}

/* ---- admission ------------------------------------------------------------------- */

static int lcp(const int32_t *a, int na, const int32_t *b, int nb)
{
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* What a running sequence may still need from the pool: its uncomputed
 * tokens and a share of its remaining output (underestimates are caught by
 * retraction). */
static long seq_outstanding(const Engine *e, const Seq *s)
{
    long need = s->n_toks - s->n_alloc;
    if (seq_samples(s)) {
        long reserve = e->opt.decode_reserve;
        long left = s->max_new < 0 ? reserve : s->max_new - s->n_gen;
        if (left > reserve) left = reserve;
        if (left > 0) need += left;
    }
    return need;
}

typedef struct {
    Seq *s;
    int m;
} Cand;

static int cand_cmp(const void *a, const void *b)
{
    const Cand *x = a, *y = b;
    if (x->m != y->m) return x->m > y->m ? -1 : 1;
    return x->s->arrival < y->s->arrival ? -1 : x->s->arrival > y->s->arrival;
}

void sched_admit(Engine *e)
{
    if (!e->n_waiting || e->n_running >= e->opt.max_running) return;
    Cand *c = malloc((size_t)e->n_waiting * sizeof *c);
    if (!c) return;   /* try again next step */
    int nc = e->n_waiting;
    for (int i = 0; i < nc; i++) {
        Seq *s = e->waiting[i];
        c[i].s = s;
        c[i].m = 0;
        if (e->opt.prefix_cache) {
            /* scratch: the match's slots are written again at admission */
            int m = radix_match_prefix(e->tree, s->toks, seq_match_cap(s), s->slots, NULL);
            c[i].m = m > 0 ? m : 0;
        }
    }
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);

    long reserved = 0;
    for (int i = 0; i < e->n_running; i++) reserved += seq_outstanding(e, e->running[i]);

    for (int i = 0; i < nc && e->n_running < e->opt.max_running; i++) {
        Seq *s = c[i].s;
        int cap = seq_match_cap(s);
        if (e->opt.prefix_cache) {
            /* In-batch sharing: wait for a prefilling sequence that will
             * compute part of our uncached prefix. */
            int defer = 0;
            for (int j = 0; j < e->n_running && !defer; j++) {
                Seq *o = e->running[j];
                if (o->n_kv >= o->n_prompt) continue;
                if (lcp(s->toks, cap, o->toks, o->n_prompt) > c[i].m) defer = 1;
            }
            if (defer) continue;
        }
        RadixNode *node = NULL;
        int m = 0;
        if (e->opt.prefix_cache) {
            m = radix_match_prefix(e->tree, s->toks, cap, s->slots, &node);
            if (m < 0) break;   /* out of memory for a split: retry next step */
            radix_lock(e->tree, node);
        }
        s->n_kv = s->n_alloc = s->tree_len = m;
        s->node = node;
        long need = seq_outstanding(e, s);
        long avail = (long)kv_n_free(e->kv) + radix_evictable(e->tree) - reserved;
        /* With nothing running, everything unlocked is evictable: admit
         * whenever the prompt itself fits (check_fits made sure it can). */
        if (need > avail && (e->n_running > 0 || s->n_toks - m > kv_n_free(e->kv) + radix_evictable(e->tree))) {
            if (node) radix_unlock(e->tree, node);
            s->n_kv = s->n_alloc = s->tree_len = 0;
            s->node = NULL;
            break;   /* strict priority order: later ones wait too */
        }
        reserved += need;
        list_remove(e->waiting, &e->n_waiting, s);
        if (grow_ptrs((void ***)&e->running, &e->cap_running, e->n_running + 1)) {
            if (node) radix_unlock(e->tree, node);
            s->n_kv = s->n_alloc = s->tree_len = 0;
            s->node = NULL;
            enqueue_waiting(e, s, 1);
            break;
        }
        e->running[e->n_running++] = s;
        s->state = SEQ_RUNNING;
        s->admit_order = ++e->admissions;
        int fully_cached = s->n_kv == s->n_toks;
        if (!s->admitted) {
            s->admitted = 1;
            e->st.prompt_tokens += (uint64_t)s->n_prompt;
            e->st.cached_tokens += (uint64_t)(m < s->n_prompt ? m : s->n_prompt);
            if (s->kind == SEQ_GEN || s->kind == SEQ_PROMPT || (s->kind == SEQ_CHOICE && !s->req->prompt_tokens)) {
                s->req->prompt_tokens = s->n_prompt;
                s->req->cached_tokens = m;
            }
        }
        /* nothing to compute (a prefill-only prompt already cached) */
        if (fully_cached) sched_finish(e, s, ENG_FINISH_LENGTH);
    }
    free(c);
}

/* Takes a running sequence out of the batch: its computed tokens go to the
 * cache and it waits again at the head of the queue. */
void sched_retract(Engine *e, Seq *s)
{
    if (grow_ptrs((void ***)&e->waiting, &e->cap_waiting, e->n_waiting + 1)) {
        sched_fail(e, s, ERR_NOMEM, "out of memory while retracting");
        return;
    }
    seq_release(e, s);
    list_remove(e->running, &e->n_running, s);
    enqueue_waiting(e, s, 1);   /* cannot fail now */
    e->st.retractions++;
}

Seq *sched_newest_running(Engine *e, const Seq *except)
{
    Seq *best = NULL;
    for (int i = 0; i < e->n_running; i++) {
        Seq *s = e->running[i];
        if (s != except && (!best || s->admit_order > best->admit_order)) best = s;
    }
    return best;
}

/* ---- the pace of mixed steps (engine_internal.h: SchedPace) ---------------------- */

#define PACE_WEIGHT 0.3         /* of the newest step in the moving average */

void sched_pace_init(SchedPace *p, double target_ms)
{
    p->target_s = target_ms > 0 ? target_ms * 1e-3 : 0;
    p->row_s = 0;
}

int sched_pace_budget(const SchedPace *p, int chunk_size, int n_decode)
{
    if (n_decode <= 0 || p->target_s <= 0 || p->row_s <= 0) return chunk_size;
    double rows = p->target_s / p->row_s - n_decode;
    int min = ENG_MIN_MIXED_PROMPT < chunk_size ? ENG_MIN_MIXED_PROMPT : chunk_size;
    if (!(rows > min)) return min;
    return rows < chunk_size ? (int)rows : chunk_size;
}

void sched_pace_record(SchedPace *p, int rows, int prompt_rows, double seconds)
{
    if (prompt_rows <= 0 || rows <= 0 || !(seconds > 0)) return;
    double r = seconds / rows;
    p->row_s = p->row_s > 0 ? p->row_s + PACE_WEIGHT * (r - p->row_s) : r;
}
