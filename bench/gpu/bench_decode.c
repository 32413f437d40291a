/*
 * bench/gpu/bench_decode.c — decode attention alone on the CUDA backend: the
 * row kernel (cu_attention, the earlier default) against the split-K kernel
 * (cuda_decode.h) under several split policies, through the backend's own
 * KDevOps.attention (so the policy measured is the one the engine runs).
 *
 *   bench_decode [HD [NH NKV]]     (default 128 32 8: Llama-3-8B's layer)
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

int main(int argc, char **argv)
{
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
                void *g = op->graph_end(be->ctx);
                if (!g) {
                    const char *e = be->error(be->ctx);
                    fprintf(stderr, "bench_decode: graph: %s\n", e ? e : "?");
                    return 1;
                }
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
