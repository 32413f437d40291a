/*
 * tests/unit/test_model_tp.c — tensor parallelism (runtime/model_tp.c,
 * kernels/comm.h) without a GPU: the model's device path on tp = 2 and 4
 * reference device backends (kernels/cpu/devref.c), one thread each, joined
 * by the HOST communicator, against the same model on one.
 *
 * What is checked: the HOST collectives themselves; that the sharded
 * forward (heads, KV heads, ff columns and vocabulary split, o/down partial
 * sums all-reduced, logits all-gathered) gives tp = 1's logits within bf16
 * rounding for prefills, chunks, decode rows and mixed batches, with and
 * without q/k/v biases and tied embeddings; that a greedy decode of two
 * sequences in one batch picks the same ids; that tp = 1 through the
 * communicator is bit-identical to the plain path; and that shapes that do
 * not divide, and host backends, are refused by name.
 *
 * The model is built in memory (model_new + model_finish): 2 layers, 8
 * query heads, 4 KV heads of 64, ff 256, vocab 96.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/comm.h"
#include "runtime/model.h"
#include "runtime/model_tp.h"
#include "tiny_model.h"

enum { E = 128, NH = 8, NKV = 4, HD = 64, FF = 256, V = 96, NL = 2, NSLOT = 256 };

/* ---- the HOST communicator ---- */

typedef struct {
    KCommGroup *g;
    int rank, count;
    float *f;
    uint16_t *h;
    float *gathered;
} CommArg;

static void *comm_rank(void *p)
{
    CommArg *a = p;
    const KComm *c = &a->g->ranks[a->rank];
    c->all_reduce(c->ctx, a->f, (size_t)a->count, K_DTYPE_F32);
    c->all_reduce(c->ctx, a->h, (size_t)a->count, K_DTYPE_BF16);
    float mine[3] = {(float)a->rank, 10.0f + a->rank, 20.0f + a->rank};
    c->all_gather(c->ctx, mine, a->gathered, sizeof mine);
    cr_assert_eq(c->barrier(c->ctx), 0);
    cr_assert_null(c->error(c->ctx));
    return NULL;
}

Test(comm_host, all_reduce_and_all_gather_on_threads)
{
    for (int n = 1; n <= 4; n++) {
        char err[128];
        KCommGroup *g = k_comm_group_new(K_COMM_AUTO, K_BACKEND_DEV_REF, n, NULL, err, sizeof err);
        cr_assert(g, "%s", err);
        cr_assert_str_eq(g->name, "host");
        cr_assert_eq(g->kind, K_COMM_HOST);
        enum { COUNT = 37 }; /* not a multiple of n: uneven chunks */
        CommArg a[4];
        pthread_t th[4];
        for (int r = 0; r < n; r++) {
            a[r] = (CommArg){.g = g, .rank = r, .count = COUNT, .f = malloc(COUNT * sizeof(float)),
                             .h = malloc(COUNT * 2), .gathered = malloc((size_t)n * 3 * sizeof(float))};
            for (int i = 0; i < COUNT; i++) {
                a[r].f[i] = (float)(i * (r + 1)) + 0.25f;
                a[r].h[i] = k_f32_to_bf16((float)(i - r));
            }
            cr_assert_eq(pthread_create(&th[r], NULL, comm_rank, &a[r]), 0);
        }
        for (int r = 0; r < n; r++) pthread_join(th[r], NULL);
        for (int r = 0; r < n; r++) {
            for (int i = 0; i < COUNT; i++) {
                float want = 0, want_h = 0;
                for (int k = 0; k < n; k++) want += (float)(i * (k + 1)) + 0.25f, want_h += (float)(i - k);
                cr_assert_float_eq(a[r].f[i], want, 1e-4, "n %d rank %d [%d]", n, r, i);
                cr_assert_eq(a[r].h[i], k_f32_to_bf16(want_h), "n %d rank %d [%d]", n, r, i);
            }
            for (int k = 0; k < n; k++) {
                cr_assert_float_eq(a[r].gathered[3 * k], (float)k, 0);
                cr_assert_float_eq(a[r].gathered[3 * k + 2], 20.0f + k, 0);
            }
            free(a[r].f);
            free(a[r].h);
            free(a[r].gathered);
        }
        k_comm_group_free(g);
    }
}

Test(comm_host, kinds_by_name_and_refusals)
{
    char err[128];
    cr_assert_eq(k_comm_kind_from_name("nccl"), K_COMM_NCCL);
    cr_assert_eq(k_comm_kind_from_name("host"), K_COMM_HOST);
    cr_assert_eq(k_comm_kind_from_name("mpi"), -1);
    cr_assert_str_eq(k_comm_kind_name(K_COMM_AUTO), "auto");
    cr_assert_null(k_comm_group_new(K_COMM_HOST, K_BACKEND_CUDA, 2, NULL, err, sizeof err));
    cr_assert(strstr(err, "device memory"), "%s", err);
    cr_assert_null(k_comm_group_new(K_COMM_NCCL, K_BACKEND_DEV_REF, 2, NULL, err, sizeof err));
    cr_assert(strstr(err, "cuda"), "%s", err);
}

/* ---- the model ---- */

typedef struct {
    bool bias, tied;
    int n_head_kv;
} Shape;

static Model *build(Shape sh, KBackendKind kind, int tp, KCommKind comm)
{
    ModelConfig c = {.arch = sh.bias ? MODEL_ARCH_QWEN2 : MODEL_ARCH_LLAMA, .n_layer = NL, .n_embd = E,
                     .n_head = NH, .n_head_kv = sh.n_head_kv, .head_dim = HD, .rope_dim = HD, .n_ff = FF,
                     .vocab = V, .max_ctx = 512, .rope_theta = 10000.0f, .rope_style = K_ROPE_NEOX,
                     .rms_eps = 1e-5f, .qkv_bias = sh.bias, .tied_embeddings = sh.tied, .bos_id = -1, .eos_id = -1};
    Model *m = tiny_model(&c, 1);
    ModelOptions o;
    model_options_default(&o);
    o.backend = kind;
    o.n_threads = 1;
    o.tp = tp;
    o.tp_comm = comm;
    model_set_options(m, &o);
    return m;
}

static int32_t tokens[200];

static void init_tokens(void) { tiny_tokens(tokens, 200, V); }

/* logits of every position of tokens[0..n) run as chunks of `chunk`;
 * malloc'd n x V */
static float *run(Model *m, int n, int chunk) { return tiny_run(m, tokens, n, chunk, NSLOT); }

static int argmax(const float *row)
{
    int best = 0;
    for (int i = 1; i < V; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* bf16 tolerance: the ranks' partial sums of o and down are each rounded
 * to bf16 before they are added, where tp = 1 rounds the whole sum once */
#define TP_TOL 0.02

static void same_logits(Shape sh, int tp)
{
    Model *one = build(sh, K_BACKEND_DEV_REF, 1, K_COMM_AUTO);
    Model *many = build(sh, K_BACKEND_DEV_REF, tp, K_COMM_AUTO);
    int n = 90; /* two attention tiles in the prefill */
    float *a = run(one, n, n), *b = run(many, n, n), *c = run(many, n, 17), *d = run(many, 12, 1);
    cr_assert_eq(model_tp_ranks(many), tp);
    cr_assert_str_eq(model_tp_comm_name(many), "host");
    cr_assert_null(model_tp_comm_name(one));
    int agree = 0;
    for (int t = 0; t < n; t++) {
        double r = tiny_rel(b + (size_t)t * V, a + (size_t)t * V, V);
        cr_assert(r < TP_TOL, "tp %d row %d: rel %g", tp, t, r);
        agree += argmax(b + (size_t)t * V) == argmax(a + (size_t)t * V);
    }
    cr_assert(agree >= n - 2, "tp %d: argmax agrees on %d of %d rows", tp, agree, n);
    /* dev-ref computes rows alone, and the host collectives are exact
     * functions of their inputs: chunks and steps give the prefill's bits */
    cr_assert_eq(memcmp(b, c, (size_t)n * V * sizeof *b), 0, "tp %d: chunked != one prefill", tp);
    cr_assert_eq(memcmp(b, d, (size_t)12 * V * sizeof *b), 0, "tp %d: token steps != one prefill", tp);
    free(a);
    free(b);
    free(c);
    free(d);
    model_free(one);
    model_free(many);
}

Test(model_tp, tp2_logits_equal_tp1_within_bf16, .init = init_tokens, .timeout = 120)
{
    same_logits((Shape){.bias = true, .n_head_kv = NKV}, 2);
}

Test(model_tp, tp4_logits_equal_tp1_within_bf16, .init = init_tokens, .timeout = 120)
{
    same_logits((Shape){.bias = true, .n_head_kv = NKV}, 4);
}

Test(model_tp, tp4_tied_embeddings_no_bias_one_kv_head_per_rank, .init = init_tokens, .timeout = 120)
{
    same_logits((Shape){.tied = true, .n_head_kv = NKV}, 4);
}

/* Two sequences decoded greedily in one batch (prefill, then decode rows),
 * n_steps ids each. With rows_only every pick comes from a returned row
 * and *margin is the smallest gap between a row's best and second-best
 * logit; else the first sequence uses device_argmax throughout and the
 * second alternates between it and a row. */
enum { PROMPT_BASE = 141 };

static void greedy(Model *m, int n_steps, bool rows_only, int32_t out[2][32], float *margin)
{
    char err[256];
    KvPool *kv = model_kv_new(m, NSLOT, K_DTYPE_F16, err, sizeof err);
    cr_assert(kv, "%s", err);
    int32_t seq[2][64], slots[2][64];
    int len[2] = {23, 9};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 64; j++) {
            seq[i][j] = j < len[i] ? tokens[(PROMPT_BASE * (i + 1) + j) % 200] : 0;
            slots[i][j] = 100 * i + j;
        }
    ModelSeq s[2];
    for (int i = 0; i < 2; i++)
        s[i] = (ModelSeq){.tokens = seq[i], .n_new = len[i], .slots = slots[i], .n_ctx = len[i],
                          .logits = MODEL_LOGITS_LAST, .device_argmax = !rows_only};
    if (margin) *margin = INFINITY;
    for (int step = 0; step < n_steps; step++) {
        ModelBatch b = {.seqs = s, .n_seqs = 2};
        cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < 2; i++) {
            int32_t id;
            if (s[i].device_argmax) {
                id = s[i].argmax;
            } else {
                const float *row = b.logits + (size_t)s[i].logits_row * V;
                id = argmax(row);
                float second = -INFINITY;
                for (int q = 0; q < V; q++)
                    if (q != id && row[q] > second) second = row[q];
                if (margin && row[id] - second < *margin) *margin = row[id] - second;
            }
            out[i][step] = id;
            seq[i][len[i]] = id;
            s[i].tokens = seq[i] + len[i];
            s[i].n_new = 1;
            len[i]++;
            s[i].n_ctx = len[i];
        }
        /* the second sequence alternates between device argmax and a row */
        s[1].device_argmax = !rows_only && step % 2 == 0;
    }
    kv_free(kv);
}

Test(model_tp, greedy_ids_identical_at_tp_1_2_4, .init = init_tokens, .timeout = 120)
{
    /* Random weights give near-ties (a best and second-best logit 0.007
     * apart were seen), which the ranks' bf16 partial sums (logits up to
     * ~0.16 off, tp4_* above) may flip: identical ids are only a claim
     * where tp = 1's picks are clear. These prompts' are, by more than
     * 0.2 at every one of the 24 picks (checked first; 141 is the one
     * prompt base of 200 whose picks all are). */
    enum { STEPS = 12 };
    Shape sh = {.bias = true, .n_head_kv = NKV};
    int32_t want[2][32] = {{0}}, rows[2][32] = {{0}}, got[2][32] = {{0}};
    float margin;
    Model *one = build(sh, K_BACKEND_DEV_REF, 1, K_COMM_AUTO);
    greedy(one, STEPS, true, rows, &margin);
    cr_assert(margin > 0.2f, "tp 1's closest pick is %g apart: not a clear-cut test", margin);
    greedy(one, STEPS, false, want, NULL);
    cr_assert_eq(memcmp(rows, want, sizeof rows), 0, "device argmax picks what the rows say");
    model_free(one);
    for (int tp = 2; tp <= 4; tp *= 2) {
        Model *m = build(sh, K_BACKEND_DEV_REF, tp, K_COMM_AUTO);
        greedy(m, STEPS, false, got, NULL);
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < STEPS; j++)
                cr_assert_eq(got[i][j], want[i][j], "tp %d seq %d id %d: %d, tp 1 gave %d", tp, i, j, got[i][j],
                             want[i][j]);
        model_free(m);
    }
}

Test(model_tp, tp1_through_the_communicator_is_the_plain_path, .init = init_tokens, .timeout = 120)
{
    Shape sh = {.bias = true, .n_head_kv = NKV};
    Model *plain = build(sh, K_BACKEND_DEV_REF, 1, K_COMM_AUTO);
    Model *forced = build(sh, K_BACKEND_DEV_REF, 1, K_COMM_HOST);
    float *a = run(plain, 70, 70), *b = run(forced, 70, 70);
    cr_assert_str_eq(model_tp_comm_name(forced), "host");
    cr_assert_eq(model_tp_ranks(forced), 1);
    cr_assert_eq(memcmp(a, b, (size_t)70 * V * sizeof *a), 0);
    int32_t ga[2][32] = {{0}}, gb[2][32] = {{0}};
    greedy(plain, 16, false, ga, NULL);
    greedy(forced, 16, false, gb, NULL);
    cr_assert_eq(memcmp(ga, gb, sizeof ga), 0);
    free(a);
    free(b);
    model_free(plain);
    model_free(forced);
}

Test(model_tp, memory_plan_per_rank)
{
    char err[256];
    Shape sh = {.bias = true, .n_head_kv = NKV};
    Model *one = build(sh, K_BACKEND_DEV_REF, 1, K_COMM_AUTO), *two = build(sh, K_BACKEND_DEV_REF, 2, K_COMM_AUTO);
    cr_assert_eq(model_reserve(one, 64, 8, err, sizeof err), 0, "%s", err);
    cr_assert_eq(model_reserve(two, 64, 8, err, sizeof err), 0, "%s", err);
    /* each rank keeps half the KV heads: about twice the slots in the same
     * memory (each dev-ref rank has its own 1 GiB) */
    int s1 = model_kv_slots(one), s2 = model_kv_slots(two);
    cr_assert(s2 > 19 * (double)s1 / 10 && s2 < 21 * (double)s1 / 10, "tp 1: %d slots, tp 2: %d", s1, s2);
    KvPool *kv = model_kv_new(two, 100, K_DTYPE_F16, err, sizeof err);
    cr_assert(kv, "%s", err);
    cr_assert_eq(kv->kv_dim, NKV / 2 * HD, "rank 0's pool holds its KV heads");
    /* a pool that is not the one model_kv_new made is refused */
    KvPool *other = model_kv_new(one, 100, K_DTYPE_F16, err, sizeof err);
    int32_t t = 1, sl = 0;
    ModelSeq s = {.tokens = &t, .n_new = 1, .slots = &sl, .n_ctx = 1, .logits = MODEL_LOGITS_LAST};
    ModelBatch b = {.seqs = &s, .n_seqs = 1};
    cr_assert_neq(model_forward(two, other, &b, err, sizeof err), 0);
    kv_free(other);
    kv_free(kv);
    model_free(one);
    model_free(two);
}

Test(model_tp, shapes_that_do_not_divide_and_host_backends_are_refused)
{
    char err[256];
    Shape sh = {.n_head_kv = NKV};
    Model *m = build(sh, K_BACKEND_DEV_REF, 3, K_COMM_AUTO);
    cr_assert_neq(model_reserve(m, 8, 2, err, sizeof err), 0);
    cr_assert(strstr(err, "--tp 3") && strstr(err, "n_head_kv"), "%s", err);
    model_free(m);
    m = build(sh, K_BACKEND_DEV_REF, 8, K_COMM_AUTO); /* 4 KV heads over 8 ranks */
    cr_assert_neq(model_reserve(m, 8, 2, err, sizeof err), 0);
    cr_assert(strstr(err, "n_head_kv"), "%s", err);
    model_free(m);
    m = build(sh, K_BACKEND_CPU_REF, 2, K_COMM_AUTO);
    cr_assert_neq(model_reserve(m, 8, 2, err, sizeof err), 0);
    cr_assert(strstr(err, "device backend"), "%s", err);
    model_free(m);
    m = build(sh, K_BACKEND_DEV_REF, 2, K_COMM_NCCL);
    cr_assert_neq(model_reserve(m, 8, 2, err, sizeof err), 0);
    cr_assert(strstr(err, "nccl"), "%s", err);
    model_free(m);
    ModelConfig c = {.n_head = 8, .n_head_kv = 8, .n_ff = 100, .vocab = 96};
    cr_assert_neq(mtp_check_shape(&c, 8, err, sizeof err), 0);
    cr_assert(strstr(err, "n_ff"), "%s", err);
    c.n_ff = 128;
    cr_assert_eq(mtp_check_shape(&c, 8, err, sizeof err), 0, "%s", err);
    c.vocab = 8 * 6; /* 6 per rank: not 16-byte rows */
    cr_assert_neq(mtp_check_shape(&c, 8, err, sizeof err), 0);
    cr_assert(strstr(err, "vocab / tp"), "%s", err);
    c.vocab = 8 * 16;
    cr_assert_eq(mtp_check_shape(&c, 8, err, sizeof err), 0, "%s", err);
}
