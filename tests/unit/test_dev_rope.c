/*
 * tests/unit/test_dev_rope.c — KDevOps.attention_rope (kernels/backend.h
 * KDevRope: rope_kv then attention as one op) on the reference device
 * backend, where SGL_CUDA_FUSE_ROPE=1 sets it as on CUDA:
 *   - the switch sets the op, and only "1" does;
 *   - the op gives the bits of rope_kv (rope_kv_fp8) then attention: the
 *     attention output and both pools, bf16 and fp8 e4m3 pools, head_dim 64
 *     and 128, GQA 1/4/8, partial rotation, a padding row (wslot -1,
 *     row_len 0) that writes nothing;
 *   - runtime/model_dev.c's decode steps (plain, and padded as a graph
 *     pads them) with the switch on give the logits and pools of the switch
 *     off, bf16 and fp8 KV.
 * The CUDA kernel (cu_attention_decode_rope) is checked against its own two
 * ops on the GPU machine: tests/gpu/test_cuda_ops.c test_attention_rope.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "runtime/model.h"
#include "tiny_model.h"

static int gcd(int a, int b) { return b ? gcd(b, a % b) : a; }

static KBackend *devref(const char *fuse)
{
    char err[256];
    if (fuse) setenv("SGL_CUDA_FUSE_ROPE", fuse, 1);
    else unsetenv("SGL_CUDA_FUSE_ROPE");
    KBackend *b = cpu_devref_backend_new(err, sizeof err);
    unsetenv("SGL_CUDA_FUSE_ROPE");
    cr_assert(b, "%s", err);
    return b;
}

Test(dev_rope, only_the_switch_sets_the_op)
{
    const char *vals[] = {NULL, "0", "", "2", "1"};
    for (int i = 0; i < 5; i++) {
        KBackend *b = devref(vals[i]);
        cr_assert_eq(b->dev->attention_rope != NULL, i == 4, "SGL_CUDA_FUSE_ROPE=%s", vals[i] ? vals[i] : "(unset)");
        cr_assert(k_backend_complete(b), "an optional op is not asked for by k_backend_complete");
        b->destroy(b->ctx);
    }
}

/* One case: n_rows decode rows of lengths lens[] (0: padding) over scattered
 * slots; the fused op against rope_kv + attention on copies of the same
 * buffers. */
static void op_case(KBackend *b, int fp8, int nh, int nkv, int hd, int rot, KRopeStyle style, int n_rows,
                    const int *lens, uint64_t key)
{
    int kvd = nkv * hd, ldq = (nh + 2 * nkv) * hd, eb = fp8 ? 1 : 2, total = 0;
    for (int r = 0; r < n_rows; r++) total += lens[r];
    int n_slots = total + 5;
    size_t pool_b = (size_t)n_slots * kvd * eb, qkv_b = (size_t)n_rows * ldq * 2, out_b = (size_t)n_rows * nh * hd * 2;
    int32_t *slots = malloc((size_t)(total + 1) * 4), roff[8], rlen[8], pos[8], wsl[8];
    int mult = 7, off = 0; /* scattered, distinct: a multiplier coprime to n_slots */
    while (gcd(mult, n_slots) != 1) mult += 2;
    for (int r = 0; r < n_rows; r++) {
        for (int t = 0; t < lens[r]; t++) slots[off + t] = (int32_t)((off + t) * mult % n_slots);
        roff[r] = off, rlen[r] = lens[r];
        wsl[r] = lens[r] ? slots[off + lens[r] - 1] : -1;
        pos[r] = lens[r] ? lens[r] - 1 + r * 13 : 0;
        off += lens[r];
    }
    uint16_t *qkv0 = malloc(qkv_b), *qa = malloc(qkv_b), *qb = malloc(qkv_b);
    uint8_t *k0 = malloc(pool_b), *v0 = malloc(pool_b), *ka = malloc(pool_b), *va = malloc(pool_b);
    uint8_t *kb = malloc(pool_b), *vb = malloc(pool_b), *oa = malloc(out_b), *ob = malloc(out_b);
    for (size_t i = 0; i < qkv_b / 2; i++) qkv0[i] = k_f32_to_bf16(tiny_urand(key, i, 2.0f));
    for (size_t i = 0; i < pool_b / eb; i++) {
        float x = tiny_urand(key + 1, i, 2.0f), y = tiny_urand(key + 2, i, 1.0f);
        if (fp8) k0[i] = k_f32_to_e4m3(x), v0[i] = k_f32_to_e4m3(y);
        else ((uint16_t *)k0)[i] = k_f32_to_bf16(x), ((uint16_t *)v0)[i] = k_f32_to_bf16(y);
    }
    float inv[64];
    for (int p = 0; p < rot / 2; p++) inv[p] = powf(10000.0f, -2.0f * p / rot);
    memcpy(qa, qkv0, qkv_b), memcpy(qb, qkv0, qkv_b);
    memcpy(ka, k0, pool_b), memcpy(kb, k0, pool_b), memcpy(va, v0, pool_b), memcpy(vb, v0, pool_b);
    memset(oa, 0xff, out_b), memset(ob, 0xff, out_b);
    KDevAttn a = {.q = qa, .ldq = ldq, .out = oa, .k_pool = ka, .v_pool = va, .n_rows = n_rows, .n_head = nh,
                  .n_head_kv = nkv, .head_dim = hd, .scale = 1.0f / sqrtf((float)hd), .slots = slots,
                  .row_off = roff, .row_len = rlen, .max_len = total + 1, .kv_fp8 = fp8};
    (fp8 ? b->dev->rope_kv_fp8 : b->dev->rope_kv)(b->ctx, qa, n_rows, nh, nkv, hd, rot, inv, style, pos, wsl, ka, va);
    b->dev->attention(b->ctx, &a);
    KDevAttn f = a;
    f.q = qb, f.out = ob, f.k_pool = kb, f.v_pool = vb;
    KDevRope rp = {.qkv = qb, .rot_dim = rot, .inv_freq = inv, .style = style, .pos = pos, .wslot = wsl,
                   .k_pool = kb, .v_pool = vb};
    b->dev->attention_rope(b->ctx, &f, &rp);
    cr_assert_null(b->error(b->ctx));
    const char *what = fp8 ? "fp8" : "bf16";
    cr_assert_eq(memcmp(oa, ob, out_b), 0, "%s hd %d heads %d/%d: attention output", what, hd, nh, nkv);
    cr_assert_eq(memcmp(ka, kb, pool_b), 0, "%s hd %d heads %d/%d: k pool", what, hd, nh, nkv);
    cr_assert_eq(memcmp(va, vb, pool_b), 0, "%s hd %d heads %d/%d: v pool", what, hd, nh, nkv);
    /* the new keys went in (the stale values were replaced), the padding row's
     * output is zeros, and only the rows' own slots changed */
    for (int r = 0; r < n_rows; r++) {
        if (wsl[r] >= 0)
            cr_assert_neq(memcmp(kb + (size_t)wsl[r] * kvd * eb, k0 + (size_t)wsl[r] * kvd * eb, (size_t)kvd * eb), 0);
        for (int i = 0; !lens[r] && i < nh * hd; i++) cr_assert_eq(((uint16_t *)ob)[(size_t)r * nh * hd + i], 0);
    }
    for (int sl = 0; sl < n_slots; sl++) {
        int mine = 0;
        for (int r = 0; r < n_rows; r++) mine |= wsl[r] == sl;
        if (!mine) cr_assert_eq(memcmp(vb + (size_t)sl * kvd * eb, v0 + (size_t)sl * kvd * eb, (size_t)kvd * eb), 0);
    }
    free(slots), free(qkv0), free(qa), free(qb), free(k0), free(v0), free(ka), free(va), free(kb), free(vb);
    free(oa), free(ob);
}

Test(dev_rope, the_op_is_rope_kv_then_attention)
{
    KBackend *b = devref("1");
    const int lens[] = {1, 70, 0, 300, 2};
    uint64_t key = 1;
    for (int fp8 = 0; fp8 < 2; fp8++)
        for (int hd = 64; hd <= 128; hd *= 2) {
            op_case(b, fp8, 4, 4, hd, hd, K_ROPE_NEOX, 5, lens, key++);
            op_case(b, fp8, 16, 4, hd, hd, K_ROPE_NORM, 5, lens, key++);
            op_case(b, fp8, 16, 2, hd, hd / 2, K_ROPE_NEOX, 5, lens, key++);
        }
    b->destroy(b->ctx);
}

/* ---- the model's decode steps with the switch ---- */

enum { E = 128, NH = 8, NKV = 2, HD = 64, ROT = 32, FF = 256, V = 96, NL = 2, NB = 5, STEPS = 4, SLOTS = 256 };

/* llama layout, GQA 4:1, NORM rope over half of each head */
static Model *build(ModelKvCache kvc)
{
    ModelConfig c = {.arch = MODEL_ARCH_LLAMA, .n_layer = NL, .n_embd = E, .n_head = NH, .n_head_kv = NKV,
                     .head_dim = HD, .rope_dim = ROT, .n_ff = FF, .vocab = V, .max_ctx = 512,
                     .rope_theta = 10000.0f, .rope_style = K_ROPE_NORM, .rms_eps = 1e-5f, .bos_id = -1, .eos_id = -1};
    Model *m = tiny_model(&c, 100);
    ModelOptions o;
    model_options_default(&o);
    o.backend = K_BACKEND_DEV_REF;
    o.n_threads = 1;
    o.kv_cache_dtype = kvc;
    model_set_options(m, &o);
    return m;
}

/* Prompts of NB sequences, then STEPS decode steps of all of them (every
 * row's logits); out[step][seq][V]; the pools' bytes after the last step in
 * *k_out / *v_out (malloc'd, *bytes each). The backend is made on the first
 * forward, under `fuse`. */
static float *decode_steps(ModelKvCache kvc, ModelGraphs mode, const char *fuse, uint8_t **k_out, uint8_t **v_out,
                           size_t *bytes)
{
    Model *m = build(kvc);
    ModelOptions o;
    model_get_options(m, &o);
    o.device_graphs = mode;
    model_set_options(m, &o);
    char err[256];
    if (fuse) setenv("SGL_CUDA_FUSE_ROPE", fuse, 1);
    else unsetenv("SGL_CUDA_FUSE_ROPE");
    KvPool *kv = model_kv_new(m, SLOTS, K_DTYPE_F16, err, sizeof err);
    unsetenv("SGL_CUDA_FUSE_ROPE");
    cr_assert(kv, "%s", err);
    cr_assert_eq(kv->dtype, kvc == MODEL_KV_FP8_E4M3 ? K_DTYPE_F8_E4M3 : K_DTYPE_BF16);
    const KBackend *be = m->backend;
    cr_assert(be && be->dev);
    cr_assert_eq(be->dev->attention_rope != NULL, fuse != NULL, "the switch reached the backend");
    int32_t slots[NB][40], len[NB], tok[64];
    for (int i = 0; i < 64; i++) tok[i] = (int32_t)(tiny_mix(9u + (uint64_t)i) % V);
    for (int i = 0; i < NB; i++) {
        len[i] = 3 + 5 * i;
        for (int t = 0; t < 40; t++) slots[i][t] = (i * 40 + t) * 3 % SLOTS; /* scattered, distinct */
        ModelSeq p = {.tokens = tok + i, .n_new = len[i], .slots = slots[i], .n_ctx = len[i],
                      .logits = MODEL_LOGITS_NONE};
        ModelBatch pb = {.seqs = &p, .n_seqs = 1};
        cr_assert_eq(model_forward(m, kv, &pb, err, sizeof err), 0, "%s", err);
    }
    float *out = malloc((size_t)STEPS * NB * V * sizeof *out);
    for (int st = 0; st < STEPS; st++) {
        ModelSeq s[NB];
        for (int i = 0; i < NB; i++)
            s[i] = (ModelSeq){.tokens = tok + 30 + st * NB + i, .n_new = 1, .slots = slots[i],
                              .n_ctx = len[i] + st + 1, .logits = MODEL_LOGITS_LAST};
        ModelBatch b = {.seqs = s, .n_seqs = NB};
        cr_assert_eq(model_forward(m, kv, &b, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < NB; i++)
            memcpy(out + ((size_t)st * NB + i) * V, b.logits + (size_t)s[i].logits_row * V, V * sizeof *out);
    }
    *bytes = (size_t)NL * SLOTS * kv->kv_dim * (kv->dtype == K_DTYPE_F8_E4M3 ? 1 : 2);
    *k_out = malloc(*bytes), *v_out = malloc(*bytes);
    size_t per = *bytes / NL;
    for (int l = 0; l < NL; l++) { /* dev-ref's "device" memory is the host's */
        memcpy(*k_out + l * per, kv->k[l], per);
        memcpy(*v_out + l * per, kv->v[l], per);
    }
    kv_free(kv);
    model_free(m);
    return out;
}

Test(dev_rope, decode_steps_with_the_switch_are_identical)
{
    const ModelKvCache kvcs[2] = {MODEL_KV_AUTO, MODEL_KV_FP8_E4M3};
    const ModelGraphs modes[2] = {MODEL_GRAPHS_OFF, MODEL_GRAPHS_PADDED}; /* PADDED: 5 rows + 3 padding rows */
    for (int ki = 0; ki < 2; ki++)
        for (int mi = 0; mi < 2; mi++) {
            uint8_t *k0, *v0, *k1, *v1;
            size_t n0, n1;
            float *off = decode_steps(kvcs[ki], modes[mi], NULL, &k0, &v0, &n0);
            float *on = decode_steps(kvcs[ki], modes[mi], "1", &k1, &v1, &n1);
            cr_assert_eq(n0, n1);
            cr_assert_eq(memcmp(off, on, (size_t)STEPS * NB * V * sizeof *off), 0, "logits, kv %d mode %d", ki, mi);
            cr_assert_eq(memcmp(k0, k1, n0), 0, "k pools, kv %d mode %d", ki, mi);
            cr_assert_eq(memcmp(v0, v1, n0), 0, "v pools, kv %d mode %d", ki, mi);
            int finite = 1;
            for (size_t i = 0; i < (size_t)STEPS * NB * V; i++) finite &= isfinite(on[i]) != 0;
            cr_assert(finite);
            free(off), free(on), free(k0), free(v0), free(k1), free(v1);
        }
}
