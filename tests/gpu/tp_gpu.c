/*
 * tests/gpu/tp_gpu.c — tensor parallelism on the GPU machine (issue 12).
 *
 *   tp_gpu check DIR TP
 *     The model at tp TP through NCCL (TP 1: the sharded path with the NCCL
 *     communicator on one GPU) against the plain single-GPU path, on a
 *     (small) HF checkpoint: teacher-forced logits of a prompt plus the
 *     plain path's greedy continuation (per-row ||tp - plain|| / ||plain||,
 *     argmax agreement, bit-identity), then the engine's greedy ids for 6
 *     requests (3 share a prefix) alone and all at once. Exit 1 when a row
 *     differs by more than CHECK_TOL (TP 1: when any bit differs, since a
 *     one-rank all-reduce and all-gather are copies) or, at TP 1, an id.
 *   tp_gpu bench DIR TP N_REQ IN OUT
 *     batch-1 decode (IN prompt tokens, OUT output tokens, greedy,
 *     ignore_eos) and offline throughput (N_REQ such requests at once)
 *     through the engine at tp TP; skipped, saying why, when the weights do
 *     not fit TP GPUs or fewer than TP are visible. JSON lines.
 *   tp_gpu allreduce N
 *     nccl-tests style: in-place bf16 all-reduce of 1 MiB .. 1 GiB over GPUs
 *     0..N-1, one thread each; algbw = bytes / time, busbw = algbw *
 *     2(N-1)/N; the sums checked first.
 *
 * Prompts are token ids from a fixed hash (no tokenizer text).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/comm.h"
#include "kernels/cuda/cuda_ops.h"
#include "runtime/engine.h"
#include "runtime/hf.h"
#include "runtime/model.h"
#include "runtime/tokenizer.h"

#define CHECK_TOL 0.03

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(const char *what, const char *err)
{
    fprintf(stderr, "tp_gpu: %s: %s\n", what, err);
    exit(2);
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void prompt_ids(int32_t *out, int n, uint64_t seed, int vocab)
{
    for (int i = 0; i < n; i++) out[i] = (int32_t)(mix(seed * 7919 + (uint64_t)i) % (uint64_t)vocab);
}

/* tp 0 with AUTO: the plain path; else tp ranks through NCCL */
static Model *open_model(const char *dir, int tp, double mem_fraction)
{
    char err[1024];
    Model *m;
    if (hf_load(dir, &m, NULL, err, sizeof err)) die("load", err);
    ModelOptions o;
    model_options_default(&o);
    o.backend = K_BACKEND_CUDA;
    o.tp = tp;
    o.tp_comm = tp ? K_COMM_NCCL : K_COMM_AUTO;
    o.mem_fraction = mem_fraction;
    model_set_options(m, &o);
    return m;
}

/* ---- requests ---- */

typedef struct {
    int32_t *ids;
    int n, done, failed;
    double t_first, t_last;
} Out;

static void on_delta(void *ud, const EngDelta *d)
{
    Out *o = ud;
    double t = now();
    if (o->t_first == 0) o->t_first = t;
    o->t_last = t;
}

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    o->done = 1;
    if (r->status) {
        fprintf(stderr, "request failed: %s\n", r->error ? r->error : "?");
        o->failed = 1;
        return;
    }
    o->ids = malloc((size_t)(r->n_ids ? r->n_ids : 1) * sizeof *o->ids);
    memcpy(o->ids, r->ids, (size_t)r->n_ids * sizeof *o->ids);
    o->n = r->n_ids;
}

static Engine *engine(Model *m, Tokenizer *tok)
{
    EngOptions eo;
    eng_options_default(&eo);
    char err[1024];
    Engine *e = eng_new(m, tok, &eo, err, sizeof err);
    if (!e) die("engine", err);
    return e;
}

static void submit(Engine *e, const int32_t *p, int np, int max_tokens, Out *o)
{
    EngGenParams g;
    eng_gen_params_default(&g);
    g.prompt_ids = p;
    g.n_prompt_ids = np;
    g.sampling.temperature = 0;
    g.sampling.max_tokens = max_tokens;
    g.sampling.ignore_eos = 1;
    g.on_delta = on_delta;
    g.on_done = on_done;
    g.ud = o;
    memset(o, 0, sizeof *o);
    if (eng_submit(e, &g, NULL)) die("submit", eng_last_error(e));
}

static void wait_all(Engine *e, Out *o, int n)
{
    for (;;) {
        int left = 0;
        for (int i = 0; i < n; i++) left += !o[i].done;
        if (!left) return;
        eng_wait(e);
    }
}

/* ---- check ---- */

enum { NREQ = 6, PLEN = 160, GEN = 32 };

/* logits of every row of ids[0..n) as one prefill; malloc'd n x vocab */
static float *teacher_forced(Model *m, const int32_t *ids, int n)
{
    char err[1024];
    KvPool *kv = model_kv_new(m, n + 8, K_DTYPE_F16, err, sizeof err);
    if (!kv) die("kv", err);
    int32_t *slots = malloc((size_t)n * sizeof *slots);
    for (int i = 0; i < n; i++) slots[i] = n - 1 - i; /* not in order */
    ModelSeq s = {.tokens = ids, .n_new = n, .slots = slots, .n_ctx = n, .logits = MODEL_LOGITS_ALL};
    ModelBatch b = {.seqs = &s, .n_seqs = 1};
    if (model_forward(m, kv, &b, err, sizeof err)) die("forward", err);
    size_t V = (size_t)m->cfg.vocab;
    float *out = malloc((size_t)n * V * sizeof *out);
    memcpy(out, b.logits, (size_t)n * V * sizeof *out);
    free(slots);
    kv_free(kv);
    return out;
}

static void requests(Model *m, Tokenizer *tok, int32_t (*prompts)[PLEN], const int *plen, Out *alone, Out *together)
{
    Engine *e = engine(m, tok);
    for (int i = 0; i < NREQ; i++) {
        submit(e, prompts[i], plen[i], GEN, &alone[i]);
        wait_all(e, &alone[i], 1);
    }
    for (int i = 0; i < NREQ; i++) submit(e, prompts[i], plen[i], GEN, &together[i]);
    wait_all(e, together, NREQ);
    eng_free(e);
}

static int first_diff(const Out *a, const Out *b)
{
    int n = a->n < b->n ? a->n : b->n;
    for (int i = 0; i < n; i++)
        if (a->ids[i] != b->ids[i]) return i;
    return a->n == b->n ? -1 : n;
}

static int check(const char *dir, int tp)
{
    char err[1024];
    Tokenizer *tok;
    if (tok_load_hf(dir, &tok, err, sizeof err)) die("tokenizer", err);
    int vis = cu_device_count();
    if (tp > vis) {
        printf("tp_gpu check tp %d: skipped, %d GPU(s) visible\n", tp, vis);
        tok_free(tok);
        return 0;
    }
    Model *plain = open_model(dir, 0, 0.4), *sharded = open_model(dir, tp, 0.4);
    int V = plain->cfg.vocab < 100000 ? plain->cfg.vocab : 100000;
    int32_t prompts[NREQ][PLEN];
    int plen[NREQ];
    for (int i = 0; i < NREQ; i++) {
        plen[i] = 40 + 20 * i;
        prompt_ids(prompts[i], plen[i], i < 3 ? 5 : 100 + (uint64_t)i, V);
        if (i < 3) prompts[i][plen[i] - 1] = (int32_t)(i + 1); /* same prefix, own last token */
    }
    Out pa[NREQ], pt[NREQ], sa[NREQ], st[NREQ];
    requests(plain, tok, prompts, plen, pa, pt);
    requests(sharded, tok, prompts, plen, sa, st);
    printf("plain: %s; tp %d: %s over %s\n", model_backend_name(plain), tp, model_backend_name(sharded),
           model_tp_comm_name(sharded) ? model_tp_comm_name(sharded) : "?");
    /* teacher forcing: prompt 5 plus the plain path's continuation */
    int n = plen[5] + pa[5].n;
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    memcpy(ids, prompts[5], (size_t)plen[5] * sizeof *ids);
    memcpy(ids + plen[5], pa[5].ids, (size_t)pa[5].n * sizeof *ids);
    float *a = teacher_forced(plain, ids, n), *b = teacher_forced(sharded, ids, n);
    size_t vv = (size_t)plain->cfg.vocab;
    double worst = 0;
    int agree = 0, bits = memcmp(a, b, (size_t)n * vv * sizeof *a) == 0;
    for (int r = 0; r < n; r++) {
        double num = 0, den = 0;
        int ia = 0, ib = 0;
        for (size_t i = 0; i < vv; i++) {
            const float x = a[r * vv + i], y = b[r * vv + i];
            num += (double)(x - y) * (x - y);
            den += (double)x * x;
            if (x > a[r * vv + ia]) ia = (int)i;
            if (y > b[r * vv + ib]) ib = (int)i;
        }
        double rel = sqrt(num / den);
        if (rel > worst || rel != rel) worst = rel;
        agree += ia == ib;
    }
    int fail = tp == 1 ? !bits : !(worst <= CHECK_TOL);
    printf("teacher-forced logits, %d rows: tp %d vs plain rel L2 max %.3g, argmax %d/%d, bit-identical %s%s\n", n,
           tp, worst, agree, n, bits ? "yes" : "no", fail ? "  FAIL" : "");
    int same_alone = 0, same_together = 0;
    for (int i = 0; i < NREQ; i++) {
        fail |= pa[i].failed || sa[i].failed || pt[i].failed || st[i].failed;
        int da = first_diff(&pa[i], &sa[i]), dt = first_diff(&pt[i], &st[i]);
        same_alone += da < 0;
        same_together += dt < 0;
        if (da >= 0 || dt >= 0) printf("  request %d: first differs at %d alone, %d together\n", i, da, dt);
    }
    printf("engine greedy ids tp %d == plain (%d tokens, %d requests): alone %d/%d, all at once %d/%d\n", tp, GEN,
           NREQ, same_alone, NREQ, same_together, NREQ);
    if (tp == 1 && (same_alone != NREQ || same_together != NREQ)) fail = 1;
    model_free(sharded);
    model_free(plain);
    tok_free(tok);
    free(a);
    free(b);
    free(ids);
    printf("tp_gpu check tp %d: %s\n", tp, fail ? "FAILED" : "passed");
    return fail;
}

/* ---- bench ---- */

static int bench(const char *dir, int tp, int n_req, int in, int outn)
{
    char err[1024];
    int vis = cu_device_count();
    if (tp > vis) {
        printf("{\"bench\": \"tp\", \"tp\": %d, \"skipped\": \"%d GPU(s) visible\"}\n", tp, vis);
        return 0;
    }
    Model *m;
    if (hf_load(dir, &m, NULL, err, sizeof err)) die("load", err);
    /* does this rank's share fit? (the embedding whole, the rest split) */
    const ModelConfig *c = &m->cfg;
    double E = c->n_embd, Q = (double)c->n_head * c->head_dim, KV = (double)c->n_head_kv * c->head_dim;
    double layer = E * (Q + 2 * KV) + Q * E + 3 * E * c->n_ff;
    double per_rank = 2.0 * (c->n_layer * layer / (tp ? tp : 1) + (double)c->vocab * E * (1.0 + 1.0 / (tp ? tp : 1)));
    KBackendConfig bc = {.kind = K_BACKEND_CUDA};
    KBackend *probe = k_backend_new(&bc, err, sizeof err);
    if (!probe) die("cuda", err);
    size_t free_b, total_b;
    probe->dev->mem_info(probe->ctx, &free_b, &total_b);
    probe->destroy(probe->ctx);
    if (per_rank > 0.92 * free_b) {
        printf("{\"bench\": \"tp\", \"tp\": %d, \"layers\": %d, \"skipped\": \"%.1f GB of weights per GPU, %.1f GB "
               "free\"}\n",
               tp, c->n_layer, per_rank / 1e9, free_b / 1e9);
        model_free(m);
        return 0;
    }
    Tokenizer *tok;
    if (tok_load_hf(dir, &tok, err, sizeof err)) die("tokenizer", err);
    ModelOptions o;
    model_options_default(&o);
    o.backend = K_BACKEND_CUDA;
    o.tp = tp;
    o.tp_comm = tp ? K_COMM_NCCL : K_COMM_AUTO;
    o.mem_fraction = 0.92;
    model_set_options(m, &o);
    double t0 = now();
    Engine *e = engine(m, tok);
    double t_load = now() - t0;
    EngStats st;
    eng_stats(e, &st);
    int V = c->vocab < 100000 ? c->vocab : 100000;
    printf("{\"bench\": \"tp\", \"tp\": %d, \"layers\": %d, \"hidden\": %d, \"backend\": \"%s\", \"comm\": \"%s\", "
           "\"load_s\": %.1f, \"kv_slots\": %d, \"weights_gb_per_gpu\": %.1f}\n",
           tp, c->n_layer, c->n_embd, model_backend_name(m), model_tp_comm_name(m) ? model_tp_comm_name(m) : "none",
           t_load, st.kv.total, per_rank / 1e9);
    fflush(stdout);
    int32_t *p = malloc((size_t)in * sizeof *p);
    Out w, o1;
    prompt_ids(p, in, 1, V);
    submit(e, p, in, 8, &w); /* warm-up */
    wait_all(e, &w, 1);
    prompt_ids(p, in, 2, V);
    double ts = now();
    submit(e, p, in, outn, &o1);
    wait_all(e, &o1, 1);
    double dec = o1.t_last - o1.t_first;
    printf("{\"bench\": \"tp batch-1\", \"tp\": %d, \"in\": %d, \"out\": %d, \"ttft_ms\": %.1f, \"decode_tok_s\": "
           "%.1f}\n",
           tp, in, o1.n, (o1.t_first - ts) * 1e3, dec > 0 ? (o1.n - 1) / dec : 0.0);
    fflush(stdout);
    Out *os = calloc((size_t)n_req, sizeof *os);
    int32_t *ps = malloc((size_t)n_req * in * sizeof *ps);
    for (int i = 0; i < n_req; i++) prompt_ids(ps + (size_t)i * in, in, 1000 + (uint64_t)i, V);
    ts = now();
    for (int i = 0; i < n_req; i++) submit(e, ps + (size_t)i * in, in, outn, &os[i]);
    wait_all(e, os, n_req);
    double wall = now() - ts;
    long gen = 0;
    int failed = 0;
    for (int i = 0; i < n_req; i++) gen += os[i].n, failed += os[i].failed;
    printf("{\"bench\": \"tp offline\", \"tp\": %d, \"requests\": %d, \"in\": %d, \"out\": %d, \"wall_s\": %.1f, "
           "\"output_tok_s\": %.1f, \"total_tok_s\": %.1f, \"failed\": %d}\n",
           tp, n_req, in, outn, wall, gen / wall, (gen + (double)n_req * in) / wall, failed);
    eng_free(e);
    model_free(m);
    tok_free(tok);
    return failed != 0;
}

/* ---- all-reduce bandwidth ---- */

typedef struct {
    int rank, n;
    KBackend *be;
    KCommGroup *g;
    pthread_barrier_t *bar;
    int fail;
    double ms[16];
} ArRank;

static const size_t ar_sizes[] = {1u << 20, 4u << 20, 16u << 20, 64u << 20, 256u << 20, 1u << 30};
enum { AR_N_SIZES = 6 };

static void *ar_rank(void *arg)
{
    ArRank *a = arg;
    char err[512];
    KBackendConfig bc = {.kind = K_BACKEND_CUDA, .device = a->rank};
    a->be = k_backend_new(&bc, err, sizeof err);
    if (!a->be) fprintf(stderr, "rank %d: %s\n", a->rank, err), a->fail = 1;
    pthread_barrier_wait(a->bar); /* backends made */
    pthread_barrier_wait(a->bar); /* the group made (or not) by main */
    if (a->fail || !a->g) return NULL;
    const KComm *c = &a->g->ranks[a->rank];
    size_t max = ar_sizes[AR_N_SIZES - 1];
    uint16_t *buf = a->be->buf_alloc(a->be->ctx, max);
    enum { CHUNK = 1 << 22 }; /* elements */
    uint16_t *host = malloc((size_t)CHUNK * 2);
    if (!buf || !host) {
        fprintf(stderr, "rank %d: out of memory\n", a->rank);
        a->fail = 1;
        pthread_barrier_wait(a->bar);
        return NULL;
    }
    /* rank r holds r + 1 + i % 7 at element i of every chunk: integers, so every partial
     * sum is exact in bf16 for n <= 8 (at most 84) */
    for (size_t i = 0; i < CHUNK; i++) host[i] = k_f32_to_bf16((float)(a->rank + 1) + (float)(i % 7));
    for (size_t off = 0; off < max / 2; off += CHUNK) a->be->upload(a->be->ctx, buf + off, host, (size_t)CHUNK * 2);
    c->all_reduce(c->ctx, buf, max / 2, K_DTYPE_BF16);
    if (c->barrier(c->ctx)) fprintf(stderr, "rank %d: %s\n", a->rank, c->error(c->ctx)), a->fail = 1;
    a->be->download(a->be->ctx, host, buf + (max / 2 - CHUNK), (size_t)CHUNK * 2);
    float base = (float)(a->n * (a->n + 1) / 2);
    for (size_t i = 0; i < CHUNK && !a->fail; i++) {
        /* every chunk was uploaded from the same host pattern: element gi
         * holds its index within its chunk (i here, max/2 a whole number of
         * chunks) mod 7 */
        size_t gi = max / 2 - CHUNK + i;
        float want = base + (float)a->n * (float)(i % 7);
        if (k_bf16_to_f32(host[i]) != want) {
            fprintf(stderr, "rank %d: element %zu is %g, want %g\n", a->rank, gi, k_bf16_to_f32(host[i]), want);
            a->fail = 1;
        }
    }
    /* every rank runs every size, even after a wrong sum: a rank that left
     * would stall the others */
    for (int s = 0; s < AR_N_SIZES; s++) {
        size_t count = ar_sizes[s] / 2;
        int iters = ar_sizes[s] >= (256u << 20) ? 10 : 40;
        for (int w = 0; w < 3; w++) c->all_reduce(c->ctx, buf, count, K_DTYPE_BF16);
        c->barrier(c->ctx);
        double t = now();
        for (int i = 0; i < iters; i++) c->all_reduce(c->ctx, buf, count, K_DTYPE_BF16);
        if (c->barrier(c->ctx)) {
            fprintf(stderr, "rank %d: %s\n", a->rank, c->error(c->ctx));
            a->fail = 1;
        }
        a->ms[s] = (now() - t) / iters * 1e3;
    }
    a->be->buf_free(a->be->ctx, buf);
    free(host);
    pthread_barrier_wait(a->bar); /* done: main frees the group */
    return NULL;
}

static int allreduce(int n)
{
    int vis = cu_device_count();
    if (n > vis) {
        printf("{\"bench\": \"allreduce\", \"ranks\": %d, \"skipped\": \"%d GPU(s) visible\"}\n", n, vis);
        return 0;
    }
    ArRank a[64];
    pthread_t th[64];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
    for (int r = 0; r < n; r++) {
        a[r] = (ArRank){.rank = r, .n = n, .bar = &bar};
        pthread_create(&th[r], NULL, ar_rank, &a[r]);
    }
    pthread_barrier_wait(&bar);
    int fail = 0;
    KBackend *bes[64];
    for (int r = 0; r < n; r++) fail |= a[r].fail, bes[r] = a[r].be;
    char err[512] = "";
    KCommGroup *g = fail ? NULL : k_comm_group_new(K_COMM_NCCL, K_BACKEND_CUDA, n, bes, err, sizeof err);
    if (!g) fprintf(stderr, "tp_gpu allreduce: %s\n", err[0] ? err : "a rank failed"), fail = 1;
    for (int r = 0; r < n; r++) a[r].g = g;
    pthread_barrier_wait(&bar);
    if (g) pthread_barrier_wait(&bar);
    for (int r = 0; r < n; r++) pthread_join(th[r], NULL), fail |= a[r].fail;
    if (!fail)
        for (int s = 0; s < AR_N_SIZES; s++) {
            double ms = 0;
            for (int r = 0; r < n; r++) ms = a[r].ms[s] > ms ? a[r].ms[s] : ms; /* the slowest rank */
            double algbw = ar_sizes[s] / (ms * 1e-3) / 1e9, busbw = algbw * 2.0 * (n - 1) / n;
            printf("{\"bench\": \"allreduce\", \"comm\": \"%s\", \"ranks\": %d, \"bytes\": %zu, \"dtype\": \"bf16\", "
                   "\"ms\": %.3f, \"algbw_gbs\": %.1f, \"busbw_gbs\": %.1f}\n",
                   g->name, n, ar_sizes[s], ms, algbw, busbw);
        }
    k_comm_group_free(g);
    for (int r = 0; r < n; r++)
        if (a[r].be) {
            a[r].be->dev->bind(a[r].be->ctx);
            a[r].be->destroy(a[r].be->ctx);
        }
    pthread_barrier_destroy(&bar);
    printf("tp_gpu allreduce %d: %s (sums checked)\n", n, fail ? "FAILED" : "passed");
    return fail;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "check")) return check(argv[2], atoi(argv[3]));
    if (argc >= 7 && !strcmp(argv[1], "bench"))
        return bench(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    if (argc >= 3 && !strcmp(argv[1], "allreduce")) return allreduce(atoi(argv[2]));
    fprintf(stderr, "usage: tp_gpu check DIR TP | bench DIR TP N_REQ IN OUT | allreduce N\n");
    return 2;
}
