/*
 * tests/unit/test_model_dev.c — the model's device path (runtime/model_dev.c)
 * on the reference device backend (kernels/cpu/devref.c: KDevOps on the
 * host), so it runs where there is no GPU: weight upload and fusion, the
 * memory plan, the flat index arrays, attention tiles, device argmax. The
 * CUDA kernels themselves are checked on the GPU machine (tests/gpu).
 *
 * The model is built in memory (model_new + model_finish, as a loader
 * would): llama layout with q/k/v biases, 2 layers, head_dim 64, GQA 2:1.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/model.h"
#include "tiny_model.h"

enum { E = 128, NH = 2, NKV = 1, HD = 64, FF = 256, V = 96, NL = 2 };

static Model *build(KBackendKind kind)
{
    ModelConfig c = {.arch = MODEL_ARCH_QWEN2, .n_layer = NL, .n_embd = E, .n_head = NH, .n_head_kv = NKV,
                     .head_dim = HD, .rope_dim = HD, .n_ff = FF, .vocab = V, .max_ctx = 512,
                     .rope_theta = 10000.0f, .rope_style = K_ROPE_NEOX, .rms_eps = 1e-5f, .qkv_bias = true,
                     .bos_id = -1, .eos_id = -1};
    Model *m = tiny_model(&c, 1);
    ModelOptions o;
    model_options_default(&o);
    o.backend = kind;
    o.n_threads = 1;
    model_set_options(m, &o);
    return m;
}

static int32_t tokens[200];

static void init_tokens(void) { tiny_tokens(tokens, 200, V); }

/* logits of every position of tokens[0..n) run as chunks of `chunk`;
 * malloc'd n x V */
static float *run(Model *m, int n, int chunk) { return tiny_run(m, tokens, n, chunk, 256); }

Test(model_dev, matches_the_host_path_within_bf16_rounding, .init = init_tokens)
{
    Model *dev = build(K_BACKEND_DEV_REF), *ref = build(K_BACKEND_CPU_REF);
    int n = 150; /* three attention tiles */
    float *a = run(dev, n, n), *b = run(ref, n, n);
    cr_assert(model_on_device(dev));
    cr_assert_str_eq(model_backend_name(dev), "dev-ref");
    for (int t = 0; t < n; t++) {
        double r = tiny_rel(a + (size_t)t * V, b + (size_t)t * V, V);
        cr_assert(r < 0.03, "row %d: rel %g", t, r);
    }
    free(a);
    free(b);
    model_free(dev);
    model_free(ref);
}

Test(model_dev, chunks_tiles_and_decode_steps_give_the_same_logits, .init = init_tokens)
{
    /* the reference device backend computes each row alone, so any split
     * of the same positions gives identical numbers: tiles over cached
     * context, 1-row decode steps and one prefill agree bit for bit */
    Model *m = build(K_BACKEND_DEV_REF);
    int n = 140;
    float *one = run(m, n, n), *chunked = run(m, n, 37), *steps = run(m, n, 1);
    cr_assert_eq(memcmp(one, chunked, (size_t)n * V * sizeof *one), 0);
    cr_assert_eq(memcmp(one, steps, (size_t)n * V * sizeof *one), 0);
    free(one);
    free(chunked);
    free(steps);
    model_free(m);
}

Test(model_dev, mixed_batch_and_device_argmax, .init = init_tokens)
{
    char err[256];
    Model *m = build(K_BACKEND_DEV_REF);
    float *alone = run(m, 80, 80);
    KvPool *kv = model_kv_new(m, 256, K_DTYPE_F16, err, sizeof err);
    cr_assert(kv, "%s", err);
    /* seq A: 40 tokens prefilled, then its 41st as a decode row; seq B: a
     * 80-token prompt in the same batch (decode row first, as the engine
     * orders them) */
    int32_t sa[41], sb[80];
    for (int i = 0; i < 41; i++) sa[i] = i;
    for (int i = 0; i < 80; i++) sb[i] = 100 + i;
    ModelSeq pre = {.tokens = tokens, .n_new = 40, .slots = sa, .n_ctx = 40, .logits = MODEL_LOGITS_NONE};
    ModelBatch pb = {.seqs = &pre, .n_seqs = 1};
    cr_assert_eq(model_forward(m, kv, &pb, err, sizeof err), 0, "%s", err);
    ModelSeq s[2] = {{.tokens = tokens + 40, .n_new = 1, .slots = sa, .n_ctx = 41, .logits = MODEL_LOGITS_LAST,
                      .device_argmax = true},
                     {.tokens = tokens, .n_new = 80, .slots = sb, .n_ctx = 80, .logits = MODEL_LOGITS_ALL}};
    ModelBatch b = {.seqs = s, .n_seqs = 2};
    cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.n_rows, 80, "the argmax row does not come back");
    cr_assert_eq(s[0].logits_row, -1);
    cr_assert_eq(s[1].logits_row, 0);
    cr_assert_eq(memcmp(b.logits, alone, (size_t)80 * V * sizeof(float)), 0);
    const float *row40 = alone + (size_t)40 * V;
    int best = 0;
    for (int i = 1; i < V; i++)
        if (row40[i] > row40[best]) best = i;
    cr_assert_eq(s[0].argmax, best);
    kv_free(kv);
    free(alone);
    model_free(m);
}

Test(model_dev, memory_plan_and_pool_placement)
{
    char err[256];
    Model *m = build(K_BACKEND_DEV_REF);
    cr_assert_eq(model_reserve(m, 64, 8, err, sizeof err), 0, "%s", err);
    /* the reference device has 1 GiB; 0.5 of it after weights and
     * activations, at 2 layers x 2 (k, v) x 64 bf16 = 512 bytes a slot */
    ModelOptions o;
    model_get_options(m, &o);
    o.mem_fraction = 0.5;
    model_set_options(m, &o);
    cr_assert(model_on_device(m), "a fraction change keeps the backend and its weights");
    int slots = model_kv_slots(m);
    cr_assert(slots > 900000 && slots < (1 << 20), "%d slots", slots);
    KvPool *kv = model_kv_new(m, 1000, K_DTYPE_F16, err, sizeof err);
    cr_assert(kv, "%s", err);
    cr_assert_not_null(kv->mem);
    cr_assert_eq(kv->dtype, K_DTYPE_BF16);
    cr_assert_lt(model_kv_slots(m), slots, "the pool came out of the plan");
    cr_assert_null(model_kv_new(m, 1000, K_DTYPE_F32, err, sizeof err));
    cr_assert(strstr(err, "F32"), "%s", err);
    /* a host pool is refused by name */
    KvPool *host = kv_new(NL, 16, NKV * HD, K_DTYPE_F16, err, sizeof err);
    int32_t t = 1, sl = 0;
    ModelSeq s = {.tokens = &t, .n_new = 1, .slots = &sl, .n_ctx = 1, .logits = MODEL_LOGITS_LAST};
    ModelBatch b = {.seqs = &s, .n_seqs = 1};
    cr_assert_neq(model_forward(m, host, &b, err, sizeof err), 0);
    cr_assert(strstr(err, "model_kv_new"), "%s", err);
    kv_free(host);
    kv_free(kv);
    model_free(m);
}

/* Decode steps of `nb` sequences (prompts of different lengths prefilled
 * first), `steps` of them, every row's logits (or argmax for odd rows) kept:
 * out[step][seq][V], ids[step][seq]. */
static void decode_steps(Model *m, ModelGraphs mode, int nb, int steps, float *out, int32_t *ids)
{
    char err[256];
    ModelOptions o;
    model_get_options(m, &o);
    o.device_graphs = mode;
    model_set_options(m, &o);
    KvPool *kv = model_kv_new(m, 256, K_DTYPE_F16, err, sizeof err);
    cr_assert(kv, "%s", err);
    int32_t slots[8][40], len[8];
    for (int i = 0; i < nb; i++) {
        len[i] = 3 + 5 * i;
        for (int t = 0; t < 40; t++) slots[i][t] = i * 40 + t; /* sequence 0 from slot 0 */
        ModelSeq p = {.tokens = tokens + i, .n_new = len[i], .slots = slots[i], .n_ctx = len[i],
                      .logits = MODEL_LOGITS_NONE};
        ModelBatch pb = {.seqs = &p, .n_seqs = 1};
        cr_assert_eq(model_forward(m, kv, &pb, err, sizeof err), 0, "%s", err);
    }
    for (int st = 0; st < steps; st++) {
        ModelSeq s[8];
        for (int i = 0; i < nb; i++)
            s[i] = (ModelSeq){.tokens = tokens + 50 + st * nb + i, .n_new = 1, .slots = slots[i],
                              .n_ctx = len[i] + st + 1, .logits = MODEL_LOGITS_LAST, .device_argmax = i % 2};
        ModelBatch b = {.seqs = s, .n_seqs = nb};
        cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(b.n_rows, (nb + 1) / 2);
        for (int i = 0; i < nb; i++) {
            float *o = out + ((size_t)st * nb + i) * V;
            if (i % 2) {
                ids[st * nb + i] = s[i].argmax;
                memset(o, 0, V * sizeof *o);
            } else {
                memcpy(o, b.logits + (size_t)s[i].logits_row * V, V * sizeof *o);
                ids[st * nb + i] = -1;
            }
        }
    }
    kv_free(kv);
}

Test(model_dev, padded_decode_steps_equal_plain_ones, .init = init_tokens)
{
    /* MODEL_GRAPHS_PADDED runs what a graph replay runs (5 rows padded to
     * 8: padding rows write no k/v, attend to nothing); on this backend
     * rows are computed alone, so it must give the plain steps' bits, and
     * ON (no graphs here: the backend refuses graph_begin) the same */
    enum { NB = 5, STEPS = 4 };
    Model *m = build(K_BACKEND_DEV_REF);
    float *plain = malloc((size_t)STEPS * NB * V * sizeof *plain), *pad = malloc((size_t)STEPS * NB * V * sizeof *pad);
    float *on = malloc((size_t)STEPS * NB * V * sizeof *on);
    int32_t ip[STEPS * NB], iq[STEPS * NB], io[STEPS * NB];
    decode_steps(m, MODEL_GRAPHS_OFF, NB, STEPS, plain, ip);
    decode_steps(m, MODEL_GRAPHS_PADDED, NB, STEPS, pad, iq);
    decode_steps(m, MODEL_GRAPHS_ON, NB, STEPS, on, io);
    cr_assert_eq(memcmp(plain, pad, (size_t)STEPS * NB * V * sizeof *plain), 0);
    cr_assert_eq(memcmp(ip, iq, sizeof ip), 0);
    cr_assert_eq(memcmp(plain, on, (size_t)STEPS * NB * V * sizeof *plain), 0);
    cr_assert_eq(memcmp(ip, io, sizeof ip), 0);
    for (int st = 0; st < STEPS; st++)
        for (int i = 1; i < NB; i += 2) cr_assert(ip[st * NB + i] >= 0 && ip[st * NB + i] < V, "id %d", ip[st * NB + i]);
    free(plain);
    free(pad);
    free(on);
    model_free(m);
}

/* run_layers calls KDevOps.matmul_swiglu where the backend has it (dev-ref
 * does: its matmul then its swiglu) and the two ops where it is NULL; both
 * give the same logits, bit for bit. */
static KDevOps real_ops;
static int fused_calls;

static void counted_matmul_swiglu(void *ctx, const KTensor *w, const void *x, int ldx, int n, int ff, void *gu,
                                  void *act)
{
    fused_calls++;
    real_ops.matmul_swiglu(ctx, w, x, ldx, n, ff, gu, act);
}

Test(model_dev, fused_gate_up_swiglu_equals_the_two_ops, .init = init_tokens)
{
    Model *m = build(K_BACKEND_DEV_REF);
    int n = 40;
    float *first = run(m, n, 7); /* the backend is made on the first forward */
    KBackend *be = (KBackend *)m->backend;
    const KDevOps *was = be->dev;
    real_ops = *was;
    cr_assert_not_null(real_ops.matmul_swiglu);
    KDevOps counted = real_ops, plain = real_ops;
    counted.matmul_swiglu = counted_matmul_swiglu;
    plain.matmul_swiglu = NULL;
    be->dev = &counted;
    fused_calls = 0;
    float *fused = run(m, n, 7);
    cr_assert_eq(fused_calls, NL * ((n + 6) / 7), "one fused call a layer and step, got %d", fused_calls);
    be->dev = &plain;
    float *two = run(m, n, 7);
    be->dev = was;
    cr_assert_eq(memcmp(fused, first, (size_t)n * V * sizeof *fused), 0);
    cr_assert_eq(memcmp(fused, two, (size_t)n * V * sizeof *fused), 0);
    free(first);
    free(fused);
    free(two);
    model_free(m);
}
