/*
 * bench/gpu/bench_decode.c — decode attention alone on the CUDA backend: the
 * row kernel (cu_attention, the earlier default) against the split-K kernel
 * (cuda_decode.h) under several split policies, through the backend's own
 * KDevOps.attention (so the policy measured is the one the engine runs).
 *
 *   bench_decode [HD [NH NKV]]     (default 128 32 8: Llama-3-8B's layer)
 *   bench_decode rope [HD [NH NKV]]
 *     rope_kv then attention against KDevOps.attention_rope (RoPE + the KV
 *     write inside the split-K kernel, SGL_CUDA_FUSE_ROPE=1), the default
 *     split policy, bf16 pool: per shape the time per layer of a graph of
 *     `rot` layers each way, and whether the outputs and the new keys'
 *     bytes are identical (they must be).
 *
 * Per shape (batch B decode rows, each of context ctx, slots of a sequence
 * contiguous as the radix cache lays out a prefill), per policy: a graph of
 * `rot` launches over disjoint slot ranges (K/V far larger than the L2, so
 * every launch reads HBM), replayed; time per launch from the wall clock
 * around synchronised replays, and the K+V bytes it must read over it.
 * Prints one JSON line per (shape, policy) and the split kernel's rel. L2
 * difference from the row kernel's output (both bf16, f32 accumulation).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* n bf16 values uniform in [-s, s) into device memory, through a host buffer */
static void *fill(const KBackend *be, size_t n, float s, uint64_t seed)
{
    void *d = be->buf_alloc(be->ctx, n * 2);
    if (!d) return NULL;
    size_t chunk = (size_t)1 << 24;
    uint16_t *h = malloc(chunk * 2);
    for (size_t i0 = 0; i0 < n; i0 += chunk) {
        size_t m = n - i0 < chunk ? n - i0 : chunk;
        for (size_t i = 0; i < m; i++) {
            float u = (float)(mix(seed * 0x9e3779b97f4a7c15ull + i0 + i) >> 40) / 16777216.0f;
            h[i] = k_f32_to_bf16((2 * u - 1) * s);
        }
        be->upload(be->ctx, (uint16_t *)d + i0, h, m * 2);
    }
    free(h);
    return d;
}

static float *to_host(const KBackend *be, const void *d, size_t n)
{
    uint16_t *h = malloc(n * 2);
    float *f = malloc(n * 4);
    be->download(be->ctx, h, d, n * 2);
    for (size_t i = 0; i < n; i++) f[i] = k_bf16_to_f32(h[i]);
    free(h);
    return f;
}

/* the median of n times (sorted in place) */
static double median(double *t, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1], t[j - 1] = x;
        }
    return t[n / 2];
}

/* the graph recorded since graph_begin; NULL (said on stderr) when it failed */
static void *end_graph(const KBackend *be)
{
    void *g = be->dev->graph_end(be->ctx);
    if (!g) {
        const char *e = be->error(be->ctx);
        fprintf(stderr, "bench_decode: graph: %s\n", e ? e : "?");
    }
    return g;
}

/* seconds per launch of a recorded graph of `rot` launches (median of reps) */
static double time_graph(const KBackend *be, void *g, int rot)
{
    enum { REPS = 10 };
    double t[REPS];
    be->dev->graph_launch(be->ctx, g);
    be->sync(be->ctx);
    for (int rp = 0; rp < REPS; rp++) {
        double t0 = now();
        be->dev->graph_launch(be->ctx, g);
        be->sync(be->ctx);
        t[rp] = (now() - t0) / rot;
    }
    return median(t, REPS);
}

static int rope_bench(int HD, int NH, int NKV)
{
    char err[256];
    setenv("SGL_CUDA_FUSE_ROPE", "1", 1);
    KBackend *be = cuda_backend_new(err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench_decode: %s\n", err);
        return 1;
    }
    const KDevOps *op = be->dev;
    if (!op->attention_rope) {
        fprintf(stderr, "bench_decode: SGL_CUDA_FUSE_ROPE=1 did not set attention_rope\n");
        return 1;
    }
    const size_t N_SLOTS = (size_t)1 << 18; /* 1 GiB of K+V at the 8B shape: past the L2 at every shape */
    int kvd = NKV * HD, ldq = (NH + 2 * NKV) * HD, half = HD / 2;
    void *k = fill(be, N_SLOTS * kvd, 2.0f, 1), *v = fill(be, N_SLOTS * kvd, 1.0f, 2);
    enum { MAX_B = 64, MAX_ROT = 32 };
    size_t qkv_b = (size_t)MAX_B * ldq * 2, out_b = (size_t)MAX_B * NH * HD * 2, kv_b = (size_t)kvd * 2;
    void *q0 = fill(be, (size_t)MAX_B * ldq, 2.0f, 3), *q = be->buf_alloc(be->ctx, qkv_b);
    void *out = be->buf_alloc(be->ctx, out_b);
    int32_t *dslots = be->buf_alloc(be->ctx, N_SLOTS * sizeof(int32_t));
    int32_t *dlen = be->buf_alloc(be->ctx, MAX_B * sizeof(int32_t)), *dpos = be->buf_alloc(be->ctx, MAX_B * 4);
    float *dinv = be->buf_alloc(be->ctx, (size_t)half * sizeof(float));
    if (!k || !v || !q0 || !q || !out || !dslots || !dlen || !dpos || !dinv) {
        fprintf(stderr, "bench_decode: out of device memory\n");
        return 1;
    }
    int32_t *hs = malloc(N_SLOTS * sizeof *hs);
    for (size_t i = 0; i < N_SLOTS; i++) hs[i] = (int32_t)i;
    be->upload(be->ctx, dslots, hs, N_SLOTS * sizeof *hs);
    free(hs);
    float inv[256];
    for (int i = 0; i < half; i++) inv[i] = powf(500000.0f, -2.0f * i / HD);
    be->upload(be->ctx, dinv, inv, (size_t)half * sizeof(float));
    uint16_t *h1 = malloc(out_b), *h2 = malloc(out_b), *k1 = malloc((size_t)MAX_B * kv_b), *k2 = malloc((size_t)MAX_B * kv_b);
    printf("{\"bench\": \"decode attention + rope\", \"device\": \"%s\", \"head_dim\": %d, \"heads\": \"%d/%d\"}\n",
           be->name, HD, NH, NKV);
    int Bs[] = {1, 8, 64}, ctxs[] = {384, 1024, 4096};
    for (int bi = 0; bi < 3; bi++)
        for (int ci = 0; ci < 3; ci++) {
            int B = Bs[bi], ctx = ctxs[ci];
            size_t per = (size_t)B * ctx;
            int rot = (int)(N_SLOTS / per);
            if (rot > MAX_ROT) rot = MAX_ROT;
            int32_t hl[MAX_B], hp[MAX_B], ho[MAX_B], hw[MAX_B];
            int32_t *offs[MAX_ROT], *ws[MAX_ROT];
            for (int r = 0; r < B; r++) hl[r] = ctx, hp[r] = ctx - 1;
            be->upload(be->ctx, dlen, hl, (size_t)B * 4);
            be->upload(be->ctx, dpos, hp, (size_t)B * 4);
            for (int j = 0; j < rot; j++) { /* layer j: its own slot range, its last slot the new token's */
                offs[j] = be->buf_alloc(be->ctx, MAX_B * 4), ws[j] = be->buf_alloc(be->ctx, MAX_B * 4);
                for (int r = 0; r < B; r++) ho[r] = (int32_t)((size_t)j * per + (size_t)r * ctx), hw[r] = ho[r] + ctx - 1;
                be->upload(be->ctx, offs[j], ho, (size_t)B * 4);
                be->upload(be->ctx, ws[j], hw, (size_t)B * 4);
            }
            KDevAttn a = {.q = q, .ldq = ldq, .out = out, .k_pool = k, .v_pool = v, .n_rows = B, .n_head = NH,
                          .n_head_kv = NKV, .head_dim = HD, .scale = 1.0f / sqrtf((float)HD), .slots = dslots,
                          .row_len = dlen, .max_len = ctx};
            KDevRope rp = {.qkv = q, .rot_dim = HD, .inv_freq = dinv, .style = K_ROPE_NEOX, .pos = dpos,
                           .k_pool = k, .v_pool = v};
            /* eager, layer 0: the two ops, then the fused one on the same q */
            int same;
            a.row_off = offs[0], rp.wslot = ws[0];
            for (int f = 0; f < 2; f++) {
                be->dev->zero(be->ctx, out, out_b);
                be->dev->gather(be->ctx, q0, ldq, (const int32_t *)dslots, B, q); /* q = q0 (rows 0..B-1) */
                for (int r = 0; r < B; r++) { /* the new slots start as zeros: the op must write them */
                    size_t at = ((size_t)r * ctx + ctx - 1) * kvd;
                    be->dev->zero(be->ctx, (uint16_t *)k + at, kv_b);
                    be->dev->zero(be->ctx, (uint16_t *)v + at, kv_b);
                }
                if (f) {
                    op->attention_rope(be->ctx, &a, &rp);
                } else {
                    op->rope_kv(be->ctx, q, B, NH, NKV, HD, HD, dinv, K_ROPE_NEOX, dpos, ws[0], k, v);
                    op->attention(be->ctx, &a);
                }
                be->download(be->ctx, f ? h2 : h1, out, (size_t)B * NH * HD * 2);
                for (int r = 0; r < B; r++) /* layer 0's new keys */
                    be->download(be->ctx, (f ? k2 : k1) + (size_t)r * kvd,
                                 (uint16_t *)k + ((size_t)r * ctx + ctx - 1) * kvd, kv_b);
            }
            same = !memcmp(h1, h2, (size_t)B * NH * HD * 2) && !memcmp(k1, k2, (size_t)B * kv_b);
            double t[2];
            for (int f = 0; f < 2; f++) {
                if (op->graph_begin(be->ctx)) {
                    fprintf(stderr, "bench_decode: no graphs\n");
                    return 1;
                }
                for (int j = 0; j < rot; j++) {
                    a.row_off = offs[j], rp.wslot = ws[j];
                    if (f) {
                        op->attention_rope(be->ctx, &a, &rp);
                    } else {
                        op->rope_kv(be->ctx, q, B, NH, NKV, HD, HD, dinv, K_ROPE_NEOX, dpos, ws[j], k, v);
                        op->attention(be->ctx, &a);
                    }
                }
                void *g = end_graph(be);
                if (!g) return 1;
                t[f] = time_graph(be, g, rot);
                op->graph_free(be->ctx, g);
            }
            const char *e = be->error(be->ctx);
            printf("{\"batch\": %d, \"ctx\": %d, \"layers\": %d, \"us_rope_kv_then_attention\": %.2f, "
                   "\"us_fused\": %.2f, \"saved_us\": %.2f, \"bit_identical\": %s%s%s}\n",
                   B, ctx, rot, t[0] * 1e6, t[1] * 1e6, (t[0] - t[1]) * 1e6, same ? "true" : "false",
                   e ? ", \"error\": " : "", e ? "1" : "");
            if (e) fprintf(stderr, "bench_decode: %s\n", e);
            fflush(stdout);
            for (int j = 0; j < rot; j++) be->buf_free(be->ctx, offs[j]), be->buf_free(be->ctx, ws[j]);
        }
    free(h1), free(h2), free(k1), free(k2);
    be->destroy(be->ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "rope"))
        return rope_bench(argc > 2 ? atoi(argv[2]) : 128, argc > 3 ? atoi(argv[3]) : 32, argc > 4 ? atoi(argv[4]) : 8);
    int HD = argc > 1 ? atoi(argv[1]) : 128, NH = argc > 2 ? atoi(argv[2]) : 32, NKV = argc > 3 ? atoi(argv[3]) : 8;
    char err[256];
    KBackend *be = cuda_backend_new(err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench_decode: %s\n", err);
        return 1;
    }
    const KDevOps *op = be->dev;
    const size_t N_SLOTS = (size_t)1 << 20;
    int kvd = NKV * HD, ldq = (NH + 2 * NKV) * HD;
    void *k = fill(be, N_SLOTS * kvd, 2.0f, 1), *v = fill(be, N_SLOTS * kvd, 1.0f, 2);
    int Bs[] = {1, 16, 64}, ctxs[] = {1024, 4096, 8192};
    const char *pols[] = {"row", "split:2:64", "split:2:64:0", "split:1:64", "split:2:128", "split:4:64", "split:4:256"};
    enum { N_POL = sizeof pols / sizeof pols[0], MAX_ROT = 16, REPS = 10 };
    void *q = fill(be, (size_t)64 * ldq, 2.0f, 3), *out = be->buf_alloc(be->ctx, (size_t)64 * NH * HD * 2);
    int32_t *dslots = be->buf_alloc(be->ctx, (N_SLOTS + 64) * sizeof(int32_t));
    int32_t *doff = be->buf_alloc(be->ctx, 64 * sizeof(int32_t)), *dlen = be->buf_alloc(be->ctx, 64 * sizeof(int32_t));
    if (!k || !v || !q || !out || !dslots || !doff || !dlen) {
        fprintf(stderr, "bench_decode: out of device memory\n");
        return 1;
    }
    /* slot list: identity (slot i at entry i); launch j of a shape starts
     * its rows' ranges at j * B * ctx */
    int32_t *hs = malloc(N_SLOTS * sizeof *hs);
    for (size_t i = 0; i < N_SLOTS; i++) hs[i] = (int32_t)i;
    be->upload(be->ctx, dslots, hs, N_SLOTS * sizeof *hs);
    free(hs);
    printf("{\"bench\": \"decode attention\", \"device\": \"%s\", \"head_dim\": %d, \"heads\": \"%d/%d\"}\n", be->name,
           HD, NH, NKV);
    for (int bi = 0; bi < 3; bi++)
        for (int ci = 0; ci < 3; ci++) {
            int B = Bs[bi], ctx = ctxs[ci];
            size_t per = (size_t)B * ctx;
            int rot = (int)(N_SLOTS / per);
            if (rot > MAX_ROT) rot = MAX_ROT;
            double bytes = (double)per * kvd * 2 * 2;
            /* row offsets per rotation: uploaded as one array per rotation */
            int32_t *offs[MAX_ROT];
            int32_t hl[64], ho[64];
            for (int r = 0; r < B; r++) hl[r] = ctx;
            be->upload(be->ctx, dlen, hl, (size_t)B * sizeof *hl);
            for (int j = 0; j < rot; j++) {
                offs[j] = be->buf_alloc(be->ctx, 64 * sizeof(int32_t));
                for (int r = 0; r < B; r++) ho[r] = (int32_t)((size_t)j * per + (size_t)r * ctx);
                be->upload(be->ctx, offs[j], ho, (size_t)B * sizeof *ho);
            }
            float *ref = NULL;
            for (int pi = 0; pi < N_POL; pi++) {
                if (cuda_backend_set_decode(be, pols[pi])) {
                    fprintf(stderr, "bench_decode: bad policy %s\n", pols[pi]);
                    return 1;
                }
                KDevAttn a = {.q = q, .ldq = ldq, .out = out, .k_pool = k, .v_pool = v, .n_rows = B, .n_head = NH,
                              .n_head_kv = NKV, .head_dim = HD, .scale = 1.0f / sqrtf((float)HD), .slots = dslots,
                              .row_len = dlen, .max_len = ctx};
                /* one eager launch for the output, then the graph */
                a.row_off = offs[0];
                op->attention(be->ctx, &a);
                float *got = to_host(be, out, (size_t)B * NH * HD);
                double diff = 0;
                if (!ref) {
                    ref = got;
                    got = NULL;
                } else {
                    double num = 0, den = 0;
                    for (size_t i = 0; i < (size_t)B * NH * HD; i++)
                        num += (double)(got[i] - ref[i]) * (got[i] - ref[i]), den += (double)ref[i] * ref[i];
                    diff = sqrt(num / (den > 0 ? den : 1));
                }
                free(got);
                if (op->graph_begin(be->ctx)) {
                    fprintf(stderr, "bench_decode: no graphs\n");
                    return 1;
                }
                for (int j = 0; j < rot; j++) {
                    a.row_off = offs[j];
                    op->attention(be->ctx, &a);
                }
                void *g = end_graph(be);
                if (!g) return 1;
                op->graph_launch(be->ctx, g);
                be->sync(be->ctx);
                double t[REPS];
                for (int rp = 0; rp < REPS; rp++) {
                    double t0 = now();
                    op->graph_launch(be->ctx, g);
                    be->sync(be->ctx);
                    t[rp] = (now() - t0) / rot;
                }
                op->graph_free(be->ctx, g);
                for (int i = 1; i < REPS; i++)
                    for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
                        double x = t[j];
                        t[j] = t[j - 1], t[j - 1] = x;
                    }
                double med = t[REPS / 2];
                const char *e = be->error(be->ctx);
                printf("{\"batch\": %d, \"ctx\": %d, \"policy\": \"%s\", \"us\": %.1f, \"GB_s\": %.0f, "
                       "\"rel_diff_vs_row\": %.2e%s%s}\n",
                       B, ctx, pols[pi], med * 1e6, bytes / med / 1e9, diff, e ? ", \"error\": " : "", e ? "1" : "");
                if (e) fprintf(stderr, "bench_decode: %s\n", e);
                fflush(stdout);
            }
            free(ref);
            for (int j = 0; j < rot; j++) be->buf_free(be->ctx, offs[j]);
        }
    be->destroy(be->ctx);
    return 0;
}
