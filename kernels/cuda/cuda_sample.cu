/*
 * kernels/cuda/cuda_sample.cu — KDevSample on the GPU (kernels/backend.h
 * states the op; kernels/cpu/devref.c is its host reference): one block of
 * 1024 threads per logit row, nothing allocated, no host synchronisation,
 * so it can sit inside a captured decode step.
 *
 *   row (f32, n ids) ─► RAW lse / top-n ─► penalties, bias (in place)
 *        ─► allowed: max, PROCESSED lse / top-n ─► greedy: min key
 *        ─► top-k: count select ─► top-p: mass select ─► min-p: threshold
 *        ─► draw: chunked prefix sums in id order
 *
 * Ranking without sorting: each allowed id has a 64-bit key, the processed
 * logit's bits turned so that a higher logit is a smaller key (the high
 * word) and the id (the low word), so ascending keys are sampler.c's order
 * (higher logit, then lower id) and every key is distinct. A radix select,
 * 8 bits a pass from the top, finds the key of the k-th best (top-k, top-n
 * logprobs) or the first key at which the best-first cumulative probability
 * reaches a target (top-p); it stops as soon as one id is left in the
 * chosen bin. Each stage keeps the ids whose key is at most its cut.
 *
 * Arithmetic as sampler.c: expf terms in f32, sums in double, scales
 * (float)(1 / sum), comparisons on the same quantities. What cannot be
 * bit-identical: CUDA's expf (within 2 ulp of glibc's) and the order of the
 * double sums (tree and atomic order, not sequential), so an id can differ
 * from the host's only where u, top_p or min_p's threshold lies within
 * that rounding of a boundary. The top-p select's bins are summed with
 * shared-memory atomics, whose order varies from run to run: a draw within
 * ~1e-15 of a top-p boundary may then differ between runs.
 */
#include "kernels/cuda/cuda_sample.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

enum { THREADS = 1024, WARPS = THREADS / 32 };

#define ALL_KEYS 0xffffffffffffffffull

struct Row {
    const KDevSampleRow *p;
    float *l;                   /* the row (penalised in place) */
    int n;
    const uint32_t *allow;      /* NULL: every id */
    float inv_t;                /* 1 / temperature, applied when scaled */
    int scaled;
};

__device__ __forceinline__ bool allowed(const Row &r, int i)
{
    return !r.allow || (r.allow[i >> 5] >> (i & 31) & 1u);
}

__device__ __forceinline__ float proc(const Row &r, int i)
{
    float x = r.l[i];
    return r.scaled ? x * r.inv_t : x;
}

/* ascending key = higher value first, then lower id; -0 ranks as +0 */
__device__ __forceinline__ uint64_t key_of(float v, int i)
{
    v = v + 0.0f;
    uint32_t u = __float_as_uint(v);
    uint32_t asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((uint64_t)~asc << 32) | (uint32_t)i;
}

/* ---- block reductions (fixed order: the same result every run) ---- */

/* v combined by op over the block: warp shuffles, one value a warp through
 * sh, then the warps' values the same way; every warp returns the total.
 * ident fills the lanes past the warp count. */
template <typename T, typename Op>
__device__ __forceinline__ T block_reduce(T v, T *sh, T ident, Op op)
{
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    int w = threadIdx.x >> 5, ln = threadIdx.x & 31;
    __syncthreads();
    if (ln == 0) sh[w] = v;
    __syncthreads();
    v = ln < WARPS ? sh[ln] : ident;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

struct OpAdd {
    template <typename T> __device__ T operator()(T a, T b) const { return a + b; }
};
struct OpMaxF {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct OpMinU64 {
    __device__ uint64_t operator()(uint64_t a, uint64_t b) const { return b < a ? b : a; }
};

__device__ double block_sum(double v, double *sh) { return block_reduce(v, sh, 0.0, OpAdd()); }
__device__ float block_max(float v, float *sh) { return block_reduce(v, sh, -INFINITY, OpMaxF()); }
__device__ int block_count(int v, int *sh) { return block_reduce(v, sh, 0, OpAdd()); }
__device__ uint64_t block_min_u64(uint64_t v, uint64_t *sh) { return block_reduce(v, sh, (uint64_t)ALL_KEYS, OpMinU64()); }

struct Shared {
    union {
        double d[WARPS];
        float f[WARPS];
        int i[WARPS];
        uint64_t k[WARPS];
    } red;
    unsigned cnt[256];
    double mass[256];
    uint64_t prefix, mask;
    double target;
    int rank, single, found;
    /* top-n collection */
    uint64_t top_key[K_SAMPLE_TOP_MAX];
    int n_got;
    float chosen_raw;
    int pick;
    double scan[THREADS];
};

/*
 * Which ids a pass looks at, and their keys: `stage` selects the values
 * (0: the raw row over all n ids, 1: processed over the allowed ids) and
 * cut/minp narrow it to a stage's survivors.
 */
struct Pred {
    int raw;
    uint64_t cut;               /* keep keys <= cut */
    int minp;                   /* also e * minp_inv >= minp_thr */
    float mx, minp_inv, minp_thr;
};

__device__ __forceinline__ bool take(const Row &r, const Pred &q, int i, float *v, uint64_t *k)
{
    if (q.raw) {
        *v = r.l[i];
    } else {
        if (!allowed(r, i)) return false;
        *v = proc(r, i);
    }
    *k = key_of(*v, i);
    if (*k > q.cut) return false;
    if (q.minp && expf(*v - q.mx) * q.minp_inv < q.minp_thr) return false;
    return true;
}

/* The digit passes: the high word in four, then the low word's id bits. */
__device__ int n_passes(int n, int *shifts)
{
    int k = 0;
    for (int s = 56; s >= 32; s -= 8) shifts[k++] = s;
    int bits = 1;
    while (bits < 31 && (1u << bits) < (unsigned)n) bits++;
    for (int s = ((bits - 1) / 8) * 8; s >= 0; s -= 8) shifts[k++] = s;
    return k;
}

/* The key of the rank-th (1-based) best id that q takes; rank <= their count. */
__device__ uint64_t select_rank(const Row &r, const Pred &q, int rank, Shared &sh)
{
    int shifts[8];
    int np = n_passes(r.n, shifts);
    if (threadIdx.x == 0) sh.prefix = 0, sh.mask = 0, sh.rank = rank, sh.single = 0;
    for (int ps = 0; ps < np; ps++) {
        int s = shifts[ps];
        for (int b = threadIdx.x; b < 256; b += THREADS) sh.cnt[b] = 0;
        __syncthreads();
        uint64_t prefix = sh.prefix, mask = sh.mask;
        for (int i = threadIdx.x; i < r.n; i += THREADS) {
            float v;
            uint64_t k;
            if (take(r, q, i, &v, &k) && (k & mask) == prefix) atomicAdd(&sh.cnt[(k >> s) & 255], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            unsigned cum = 0;
            int b = 0;
            for (; b < 255; b++) {
                if (cum + sh.cnt[b] >= (unsigned)sh.rank) break;
                cum += sh.cnt[b];
            }
            sh.rank -= (int)cum;
            sh.prefix |= (uint64_t)b << s;
            sh.mask |= (uint64_t)255 << s;
            sh.single = sh.cnt[b] == 1;
        }
        __syncthreads();
        if (sh.single) break;
    }
    /* the one key under the prefix (or the prefix, when every digit is set) */
    uint64_t prefix = sh.prefix, mask = sh.mask, best = ALL_KEYS;
    for (int i = threadIdx.x; i < r.n; i += THREADS) {
        float v;
        uint64_t k;
        if (take(r, q, i, &v, &k) && (k & mask) == prefix && k < best) best = k;
    }
    return block_min_u64(best, sh.red.k);
}

/*
 * The first key, best first, at which the cumulative mass (e * inv, e the
 * expf term of the value against mx) reaches target; ALL_KEYS when the
 * whole mass falls short of it (rounding: then every id stays).
 */
__device__ uint64_t select_mass(const Row &r, const Pred &q, float inv, double target, Shared &sh)
{
    int shifts[8];
    int np = n_passes(r.n, shifts);
    if (threadIdx.x == 0) sh.prefix = 0, sh.mask = 0, sh.target = target, sh.single = 0, sh.found = 1;
    for (int ps = 0; ps < np; ps++) {
        int s = shifts[ps];
        for (int b = threadIdx.x; b < 256; b += THREADS) sh.cnt[b] = 0, sh.mass[b] = 0;
        __syncthreads();
        uint64_t prefix = sh.prefix, mask = sh.mask;
        for (int i = threadIdx.x; i < r.n; i += THREADS) {
            float v;
            uint64_t k;
            if (take(r, q, i, &v, &k) && (k & mask) == prefix) {
                int b = (int)((k >> s) & 255);
                atomicAdd(&sh.cnt[b], 1u);
                atomicAdd(&sh.mass[b], (double)(expf(v - q.mx) * inv));
            }
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            double cum = 0;
            int b = 0, last = -1;
            for (; b < 256; b++) {
                if (sh.cnt[b]) last = b;
                if (sh.cnt[b] && cum + sh.mass[b] >= sh.target) break;
                cum += sh.mass[b];
            }
            if (b == 256) {
                /* the first pass: the total is short of the target, keep all;
                 * later: the bin's own re-summed mass fell short by rounding,
                 * take its last id */
                if (ps == 0) sh.found = 0;
                b = last > 0 ? last : 0;
            }
            sh.target -= cum;
            sh.prefix |= (uint64_t)b << s;
            sh.mask |= (uint64_t)255 << s;
            sh.single = sh.cnt[b] == 1 || !sh.found;
        }
        __syncthreads();
        if (sh.single) break;
    }
    if (!sh.found) return ALL_KEYS;
    /* the one key under the prefix (or the prefix, when every digit is set) */
    uint64_t prefix = sh.prefix, mask = sh.mask, best = ALL_KEYS;
    for (int i = threadIdx.x; i < r.n; i += THREADS) {
        float v;
        uint64_t k;
        if (take(r, q, i, &v, &k) && (k & mask) == prefix && k < best) best = k;
    }
    return block_min_u64(best, sh.red.k);
}

/* Sum of expf(v - mx) and the count over what q takes. */
__device__ double stage_sum(const Row &r, const Pred &q, Shared &sh, int *count)
{
    double s = 0;
    int c = 0;
    for (int i = threadIdx.x; i < r.n; i += THREADS) {
        float v;
        uint64_t k;
        if (take(r, q, i, &v, &k)) s += expf(v - q.mx), c++;
    }
    *count = block_count(c, sh.red.i);
    return block_sum(s, sh.red.d);
}

/* The n best of q as (id, value - lse), best first; returns how many. */
__device__ int top_n(const Row &r, const Pred &q, int n, int avail, double lse, int32_t *ids, float *lps,
                     Shared &sh)
{
    if (n > avail) n = avail;
    if (n <= 0) return 0;
    Pred cq = q;
    cq.cut = select_rank(r, q, n, sh);
    if (threadIdx.x == 0) sh.n_got = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < r.n; i += THREADS) {
        float v;
        uint64_t k;
        if (take(r, cq, i, &v, &k)) {
            int at = atomicAdd(&sh.n_got, 1);
            if (at < K_SAMPLE_TOP_MAX) sh.top_key[at] = k;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        int m = sh.n_got < n ? sh.n_got : n;
        for (int a = 1; a < m; a++)
            for (int b = a; b > 0 && sh.top_key[b] < sh.top_key[b - 1]; b--) {
                uint64_t t = sh.top_key[b];
                sh.top_key[b] = sh.top_key[b - 1];
                sh.top_key[b - 1] = t;
            }
        for (int a = 0; a < m; a++) {
            int id = (int)(uint32_t)sh.top_key[a];
            float v = q.raw ? r.l[id] : proc(r, id);
            ids[a] = id;
            lps[a] = (float)((double)v - lse);
        }
        sh.n_got = m;
    }
    __syncthreads();
    return sh.n_got;
}

__global__ void __launch_bounds__(THREADS) k_sample(KDevSample s)
{
    __shared__ Shared sh;
    int r = blockIdx.x;
    const KDevSampleRow *p = &s.rows[r];
    Row row = {p, s.logits + (size_t)r * s.ld, s.n, p->allow_off >= 0 ? s.allow + p->allow_off : NULL,
               1.0f / p->temperature, p->temperature != 1.0f};
    int32_t *top_id = s.top_id + (size_t)r * K_SAMPLE_TOP_MAX;
    float *top_lp = s.top_lp + (size_t)r * K_SAMPLE_TOP_MAX;
    int nt = p->n_top < K_SAMPLE_TOP_MAX ? p->n_top : K_SAMPLE_TOP_MAX;
    int n_top = 0;
    double lse = 0;
    Pred all = {1, ALL_KEYS, 0, 0, 0, 0};

    /* RAW logprobs: the row as the model gave it */
    if (p->lp_mode == K_LP_RAW) {
        float mx = -INFINITY;
        for (int i = threadIdx.x; i < s.n; i += THREADS) mx = fmaxf(mx, row.l[i]);
        mx = block_max(mx, sh.red.f);
        if (isinf(mx)) {
            lse = mx;
        } else {
            all.mx = mx;
            int c;
            lse = mx + log(stage_sum(row, all, sh, &c));
        }
        n_top = top_n(row, all, nt, s.n, lse, top_id, top_lp, sh);
    }

    /* penalties, then the bias in order (one thread: ids may repeat) */
    for (int j = threadIdx.x; j < p->n_pen; j += THREADS) {
        KDevPenalty *e = &s.pen[p->pen_off + j];
        if (e->id >= 0 && e->id < s.n) e->raw = row.l[e->id];
    }
    for (int j = threadIdx.x; j < p->n_bias; j += THREADS) {
        KDevBias *e = &s.bias[p->bias_off + j];
        if (e->id >= 0 && e->id < s.n) e->raw = row.l[e->id];
    }
    __syncthreads();
    for (int j = threadIdx.x; j < p->n_pen; j += THREADS) {
        const KDevPenalty *e = &s.pen[p->pen_off + j];
        if (e->id < 0 || e->id >= s.n) continue;
        float l = e->raw;
        if (p->repetition_penalty != 1.0f) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        /* rounded as the host rounds it (no fused multiply-add) */
        if (e->generated) l -= __fadd_rn(__fmul_rn(p->frequency_penalty, (float)e->generated), p->presence_penalty);
        row.l[e->id] = l;
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int j = 0; j < p->n_bias; j++) {
            const KDevBias *e = &s.bias[p->bias_off + j];
            if (e->id >= 0 && e->id < s.n) row.l[e->id] += e->bias;
        }
    __syncthreads();

    /* the allowed ids, processed */
    float mx = -INFINITY;
    uint64_t best = ALL_KEYS;
    int kept = 0;
    for (int i = threadIdx.x; i < s.n; i += THREADS)
        if (allowed(row, i)) {
            float v = proc(row, i);
            uint64_t k = key_of(v, i);
            mx = fmaxf(mx, v);
            if (k < best) best = k;
            kept++;
        }
    mx = block_max(mx, sh.red.f);
    best = block_min_u64(best, sh.red.k);
    kept = block_count(kept, sh.red.i);
    if (kept == 0) {
        if (threadIdx.x == 0) s.out_id[r] = -1, s.out_lp[r] = 0, s.out_n_top[r] = 0;
        return;
    }
    Pred q = {0, ALL_KEYS, 0, mx, 0, 0};
    if (p->lp_mode == K_LP_PROCESSED) {
        int c;
        lse = mx + log(stage_sum(row, q, sh, &c));
        n_top = top_n(row, q, nt, kept, lse, top_id, top_lp, sh);
    }

    int id;
    if (p->greedy) {
        id = (int)(uint32_t)best;
    } else {
        int m = kept;
        if (p->top_k > 0 && p->top_k < m) {
            q.cut = select_rank(row, q, p->top_k, sh);
            m = p->top_k;
        }
        if (p->top_p < 1.0f && m > 1) {
            int c;
            float inv = (float)(1.0 / stage_sum(row, q, sh, &c));
            q.cut = select_mass(row, q, inv, (double)p->top_p, sh);
            stage_sum(row, q, sh, &m);
        }
        if (p->min_p > 0.0f && m > 1) {
            int c;
            float inv = (float)(1.0 / stage_sum(row, q, sh, &c));
            /* the best term is expf(0) = 1: the highest probability is inv */
            q.minp = 1;
            q.minp_inv = inv;
            q.minp_thr = p->min_p * inv;
        }
        int c;
        float inv = (float)(1.0 / stage_sum(row, q, sh, &c));

        /* the draw: thread t walks ids [t * chunk, (t + 1) * chunk) */
        int chunk = (s.n + THREADS - 1) / THREADS, lo = threadIdx.x * chunk;
        int hi = lo + chunk < s.n ? lo + chunk : s.n;
        double part = 0;
        int last_pos = -1;
        for (int i = lo; i < hi; i++) {
            float v;
            uint64_t k;
            if (take(row, q, i, &v, &k)) {
                float pr = expf(v - mx) * inv;
                part += pr;
                if (pr > 0) last_pos = i;
            }
        }
        sh.scan[threadIdx.x] = part;
        if (threadIdx.x == 0) sh.pick = 0x7fffffff, sh.found = -1;
        __syncthreads();
        /* exclusive prefix over the threads' parts (Hillis-Steele, fixed order) */
        for (int o = 1; o < THREADS; o <<= 1) {
            double add = threadIdx.x >= (unsigned)o ? sh.scan[threadIdx.x - o] : 0;
            __syncthreads();
            sh.scan[threadIdx.x] += add;
            __syncthreads();
        }
        double cum = sh.scan[threadIdx.x] - part;
        if (lo < hi && p->u < cum + part)
            for (int i = lo; i < hi; i++) {
                float v;
                uint64_t k;
                if (!take(row, q, i, &v, &k)) continue;
                cum += expf(v - mx) * inv;
                if (p->u < cum) {
                    atomicMin(&sh.pick, i);
                    break;
                }
            }
        if (last_pos >= 0) atomicMax(&sh.found, last_pos);
        __syncthreads();
        id = sh.pick != 0x7fffffff ? sh.pick : sh.found >= 0 ? sh.found : (int)(uint32_t)best;
    }

    if (threadIdx.x == 0) sh.chosen_raw = row.l[id];
    __syncthreads();
    if (p->lp_mode == K_LP_RAW) {
        for (int j = threadIdx.x; j < p->n_pen; j += THREADS)
            if (s.pen[p->pen_off + j].id == id) sh.chosen_raw = s.pen[p->pen_off + j].raw;
        for (int j = threadIdx.x; j < p->n_bias; j += THREADS)
            if (s.bias[p->bias_off + j].id == id) sh.chosen_raw = s.bias[p->bias_off + j].raw;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        s.out_id[r] = id;
        s.out_n_top[r] = n_top;
        if (p->lp_mode == K_LP_RAW) s.out_lp[r] = (float)((double)sh.chosen_raw - lse);
        else if (p->lp_mode == K_LP_PROCESSED) s.out_lp[r] = (float)((double)proc(row, id) - lse);
        else s.out_lp[r] = 0;
    }
}

extern "C" void cu_sample(CuCtx *c, const KDevSample *s)
{
    if (s->n_rows <= 0) return;
    k_sample<<<s->n_rows, THREADS, 0, (cudaStream_t)cu_stream(c)>>>(*s);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) cu_fail(c, "sample", cudaGetErrorString(e));
}
