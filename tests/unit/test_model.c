/*
 * tests/unit/test_model.c — the forward pass on the default model:
 *   - logits against llama.cpp's (tests/data/smollm2_q4_1_logits.txt, made by
 *     tests/tools/llama_ref.py with the same GGUF and token ids)
 *   - self-consistency of the batch API: chunked prefill, token-by-token
 *     decode, several sequences in one batch, a shared prefix, positions
 *   - error paths (bad batch, bad pool, unknown architecture)
 *   - the KV pool's slot allocator
 * Tests that need models/ skip with a message when the file is missing.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cpu/cpu.h"
#include "runtime/gguf.h"
#include "runtime/kvpool.h"
#include "runtime/model.h"

#define MODEL_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#define REF_PATH "tests/data/smollm2_q4_1_logits.txt"

/* ---- reference file ---------------------------------------------------------- */

typedef struct {
    int pos, k;
    int ids[20];
    float logits[20];
} RefRow;

typedef struct {
    char name[32];
    int n;
    int32_t ids[512];
    RefRow rows[512];
    int n_rows;
    float mean, std;
} RefPrompt;

static RefPrompt refs[8];
static int n_refs;

static void load_refs(void)
{
    FILE *f = fopen(REF_PATH, "r");
    cr_assert(f, "%s missing", REF_PATH);
    char kind[16];
    n_refs = 0;
    while (fscanf(f, "%15s", kind) == 1) {
        if (kind[0] == '#') {
            int c;
            while ((c = fgetc(f)) != '\n' && c != EOF) {}
            continue;
        }
        char name[32];
        cr_assert_eq(fscanf(f, "%31s", name), 1);
        if (strcmp(kind, "prompt") == 0) {
            RefPrompt *p = &refs[n_refs++];
            cr_assert(n_refs <= 8);
            memset(p, 0, sizeof *p);
            strcpy(p->name, name);
            cr_assert_eq(fscanf(f, "%d", &p->n), 1);
            cr_assert(p->n > 0 && p->n <= 512);
            for (int i = 0; i < p->n; i++) cr_assert_eq(fscanf(f, "%d", &p->ids[i]), 1);
        } else if (strcmp(kind, "pos") == 0) {
            RefPrompt *p = &refs[n_refs - 1];
            RefRow *r = &p->rows[p->n_rows++];
            cr_assert_eq(fscanf(f, "%d %d", &r->pos, &r->k), 2);
            cr_assert(r->k <= 20);
            for (int i = 0; i < r->k; i++) cr_assert_eq(fscanf(f, "%d %f", &r->ids[i], &r->logits[i]), 2);
        } else if (strcmp(kind, "stats") == 0) {
            RefPrompt *p = &refs[n_refs - 1];
            cr_assert_eq(fscanf(f, "%f %f", &p->mean, &p->std), 2);
        } else {
            cr_assert_fail("bad line kind '%s' in %s", kind, REF_PATH);
        }
    }
    fclose(f);
    cr_assert(n_refs >= 4);
}

/* ---- fixtures ------------------------------------------------------------------ */

static Model *model;
static KvPool *pool;

/* The CPU backend of `kind` with its kernels/cpu/cpu.h switches (CPU_NO_BLAS
 * is the model's batch_invariant), threads as they were, from the next
 * forward on. */
static void set_backend(Model *m, KBackendKind kind, unsigned cpu_flags)
{
    ModelOptions o;
    model_get_options(m, &o);
    o.backend = kind;
    o.batch_invariant = (cpu_flags & CPU_NO_BLAS) != 0;
    o.backend_flags = cpu_flags & ~(unsigned)CPU_NO_BLAS;
    model_set_options(m, &o);
}

static void need_model(void)
{
    if (access(MODEL_PATH, R_OK) != 0) cr_skip_test("%s not found: run `make model` to fetch it", MODEL_PATH);
    char err[512];
    cr_assert_eq(model_load_gguf(MODEL_PATH, &model, err, sizeof err), 0, "%s", err);
    model_set_threads(model, 2);
    const ModelConfig *c = &model->cfg;
    pool = kv_new(c->n_layer, 2048, c->n_head_kv * c->head_dim, K_DTYPE_F16, err, sizeof err);
    cr_assert(pool, "%s", err);
}

static void drop_model(void)
{
    kv_free(pool);
    model_free(model);
    model = NULL;
    pool = NULL;
}

/* runs one sequence over fresh slots; returns a malloc'd copy of its logits rows */
static float *run_seq(const int32_t *ids, int n, ModelLogits mode, int *n_rows)
{
    char err[512];
    int32_t *slots = malloc((size_t)n * sizeof *slots);
    cr_assert_eq(kv_alloc(pool, n, slots), 0);
    ModelSeq s = {.tokens = ids, .n_new = n, .slots = slots, .n_ctx = n, .logits = mode};
    ModelBatch b = {.seqs = &s, .n_seqs = 1};
    cr_assert_eq(model_forward(model, pool, &b, err, sizeof err), 0, "%s", err);
    size_t bytes = (size_t)b.n_rows * model->cfg.vocab * sizeof(float);
    float *out = malloc(bytes ? bytes : 1);
    memcpy(out, b.logits, bytes);
    if (n_rows) *n_rows = b.n_rows;
    kv_release(pool, slots, n);
    free(slots);
    return out;
}

static void top_k(const float *l, int vocab, int k, int *ids)
{
    for (int i = 0; i < k; i++) ids[i] = -1;
    for (int v = 0; v < vocab; v++) {
        int at = k;
        while (at > 0 && (ids[at - 1] < 0 || l[v] > l[ids[at - 1]])) at--;
        if (at == k) continue;
        memmove(ids + at + 1, ids + at, (size_t)(k - at - 1) * sizeof *ids);
        ids[at] = v;
    }
}

/* ---- against llama.cpp ------------------------------------------------------------- */

/* Why the tolerances are what they are: this model is very sensitive to
 * rounding. Activations are quantized to 8 bits before each quantized matmul,
 * so any tiny perturbation re-rolls which values round up; llama.cpp's own
 * two attention paths (flash vs default) differ on these prompts by up to
 * 1.19 in a logit (mean shift 0.45, std 0.13). We hold ourselves to the
 * same band:
 *   - top-1 identical wherever llama.cpp's top-1 leads its #2 by > TIE;
 *   - on the last position of each prompt, our top-10 are llama.cpp's
 *     top-10, except that an id may swap in across the boundary when
 *     llama.cpp has it within TIE of its 10th;
 *   - every logit of llama.cpp's listed ids within MAX_DIFF of ours;
 *   - mean of the whole row within MEAN_DIFF. */
#define TIE 0.75f
#define MAX_DIFF 1.5f
#define MEAN_DIFF 0.5

static void compare_row(const char *what, const float *l, int vocab, const RefRow *r, int k, double *max_diff)
{
    int mine[20];
    if (k > r->k) k = r->k;
    top_k(l, vocab, k, mine);
    if (r->logits[0] - r->logits[1] > TIE)
        cr_assert_eq(mine[0], r->ids[0], "%s: top-1 is %d (%.3f), llama.cpp says %d (%.3f)", what, mine[0],
                     l[mine[0]], r->ids[0], r->logits[0]);
    float kth = r->logits[k - 1];
    for (int i = 0; i < k; i++) {
        int found = -1;
        for (int j = 0; j < r->k; j++)
            if (r->ids[j] == mine[i]) found = j;
        if (found >= 0 && found < k) continue;
        float ref_logit = found >= 0 ? r->logits[found] : -INFINITY;
        cr_assert(ref_logit >= kth - TIE, "%s: id %d is in our top-%d (%.3f) but llama.cpp gives it %.3f (its #%d: %.3f)",
                  what, mine[i], k, l[mine[i]], ref_logit, k, kth);
    }
    for (int j = 0; j < r->k; j++) {
        double d = fabs((double)l[r->ids[j]] - r->logits[j]);
        if (d > *max_diff) *max_diff = d;
        cr_assert(d <= MAX_DIFF, "%s: id %d logit %.3f, llama.cpp %.3f", what, r->ids[j], l[r->ids[j]], r->logits[j]);
    }
}

TestSuite(model, .init = need_model, .fini = drop_model, .timeout = 300);

Test(model, config_of_default_model)
{
    const ModelConfig *c = &model->cfg;
    cr_assert_eq(c->arch, MODEL_ARCH_LLAMA);
    cr_assert_eq(c->n_layer, 30);
    cr_assert_eq(c->n_embd, 576);
    cr_assert_eq(c->n_head, 9);
    cr_assert_eq(c->n_head_kv, 3);
    cr_assert_eq(c->head_dim, 64);
    cr_assert_eq(c->n_ff, 1536);
    cr_assert_eq(c->vocab, 49152);
    cr_assert_eq(c->max_ctx, 8192);
    cr_assert_float_eq(c->rope_theta, 100000.0f, 1e-3);
    cr_assert_eq(c->rope_style, K_ROPE_NORM);
    cr_assert(c->tied_embeddings);
    cr_assert(!c->qkv_bias);
    cr_assert_eq(c->bos_id, 1);
    cr_assert_eq(c->eos_id, 2);
    cr_assert_eq(model->output.data, model->tok_embd.data);
    cr_assert_eq(model->tok_embd.dtype, K_DTYPE_Q8_0);
    cr_assert_eq(model->layers[0].wq.dtype, K_DTYPE_Q4_1);
    cr_assert_not_null(model->gguf);
}

/* Each prompt through the fast backend as the engine runs it, and through
 * the portable scalar kernels (what a CPU without AVX2 runs). */
Test(model, logits_match_llama_cpp)
{
    load_refs();
    const unsigned variants[] = {0, CPU_NO_SIMD | CPU_NO_BLAS};
    const char *vnames[] = {"fast", "scalar"};
    for (int v = 0; v < 2; v++) {
        set_backend(model, K_BACKEND_CPU, variants[v]);
        double worst = 0, worst_mean = 0;
        for (int p = 0; p < n_refs; p++) {
            RefPrompt *rp = &refs[p];
            int all = rp->n_rows > 1, n_rows;
            float *l = run_seq(rp->ids, rp->n, all ? MODEL_LOGITS_ALL : MODEL_LOGITS_LAST, &n_rows);
            cr_assert_eq(n_rows, all ? rp->n : 1);
            double md = 0;
            for (int r = 0; r < rp->n_rows; r++) {
                const RefRow *rr = &rp->rows[r];
                int row = all ? rr->pos : 0;
                char what[96];
                snprintf(what, sizeof what, "%s: prompt '%.31s' position %d", vnames[v], rp->name, rr->pos);
                compare_row(what, l + (size_t)row * model->cfg.vocab, model->cfg.vocab, rr,
                            rr->pos == rp->n - 1 ? 10 : 1, &md);
            }
            const float *last = l + (size_t)(n_rows - 1) * model->cfg.vocab;
            double s = 0, ss = 0;
            for (int i = 0; i < model->cfg.vocab; i++) {
                s += last[i];
                ss += (double)last[i] * last[i];
            }
            double mean = s / model->cfg.vocab, sd = sqrt(ss / model->cfg.vocab - mean * mean);
            cr_assert(fabs(mean - rp->mean) < MEAN_DIFF && fabs(sd - rp->std) < 0.2,
                      "%s '%s': mean %.3f sd %.3f vs llama.cpp %.3f %.3f", vnames[v], rp->name, mean, sd, rp->mean,
                      rp->std);
            fprintf(stderr,
                    "test_model: %-6s prompt %-8s %3d tokens, %2d rows: max |logit diff| %.3f over llama.cpp's top ids, "
                    "row mean diff %+.3f\n",
                    vnames[v], rp->name, rp->n, rp->n_rows, md, mean - rp->mean);
            if (md > worst) worst = md;
            if (fabs(mean - rp->mean) > worst_mean) worst_mean = fabs(mean - rp->mean);
            free(l);
        }
        fprintf(stderr, "test_model: %-6s worst max |logit diff| %.3f, worst |mean diff| %.3f\n", vnames[v], worst,
                worst_mean);
    }
}

static void use_backend(unsigned flags)
{
    set_backend(model, K_BACKEND_CPU, flags);
}

/* The same prompt through different batch shapes gives the same logits.
 * SAME path (no sgemm): every row's numbers are computed the same way
 * whatever the batch (per-row activation quantization, integer dots whose
 * 4-token kernels match the 1-token ones bit for bit, per-token attention),
 * so results must be identical. MIXED path (the default: sgemm for batches
 * of 16+ tokens): rows may differ by the quantization noise described above,
 * so the check is only a coarse one on the root-mean-square difference
 * (llama.cpp's flash and default attention differ by up to 0.84 rms on
 * single positions of this prompt; the exact checks are the SAME path here
 * and the per-op tests in test_kernels). */
enum { SAME_PATH, MIXED_PATH };
#define MIXED_PATH_RMS 1.0

static double path_diff(int path, const float *a, const float *b, size_t n)
{
    double m = 0, ss = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
        ss += d * d;
    }
    return path == SAME_PATH ? m : sqrt(ss / (double)n);
}

static void check_path_diff(int path, double d, const char *what)
{
    if (path == SAME_PATH) cr_assert(d == 0, "%s: same computation path, yet max |diff| %g", what, d);
    else cr_assert(d < MIXED_PATH_RMS, "%s: rms diff %g", what, d);
}

static const int32_t prompt[] = {1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018,
                                 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 216, 34, 27, 34, 47};
#define PN (int)(sizeof prompt / sizeof prompt[0])

static void chunked_vs_one_prefill(int path)
{
    char err[512];
    use_backend(path == SAME_PATH ? CPU_NO_BLAS : 0);
    int V = model->cfg.vocab;
    float *full = run_seq(prompt, PN, MODEL_LOGITS_ALL, NULL);
    int32_t slots[PN];
    cr_assert_eq(kv_alloc(pool, PN, slots), 0);
    /* chunks of 7 and 13 tokens, then one token at a time */
    int done = 0, chunks[] = {7, 13};
    for (int ci = 0; done < PN; ci++) {
        int n = ci < 2 ? chunks[ci] : 1;
        ModelSeq s = {.tokens = prompt + done, .n_new = n, .slots = slots, .n_ctx = done + n,
                      .logits = MODEL_LOGITS_ALL};
        ModelBatch b = {.seqs = &s, .n_seqs = 1};
        cr_assert_eq(model_forward(model, pool, &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(b.n_rows, n);
        char what[64];
        snprintf(what, sizeof what, "tokens %d..%d chunked vs one prefill", done, done + n - 1);
        check_path_diff(path, path_diff(path, b.logits, full + (size_t)done * V, (size_t)n * V), what);
        done += n;
    }
    kv_release(pool, slots, PN);
    free(full);
}

Test(model, chunked_prefill_and_decode_agree_with_one_prefill)
{
    chunked_vs_one_prefill(SAME_PATH);
    chunked_vs_one_prefill(MIXED_PATH);
}

/* three sequences in one batch: A the rest of the prompt after a 20-token
 * prefix computed by an earlier call, B the same prefix (sharing A's slots)
 * plus 3 other tokens, C a short prompt of its own */
static void batch_vs_separate(int path)
{
    char err[512];
    use_backend(path == SAME_PATH ? CPU_NO_BLAS : 0);
    int V = model->cfg.vocab;
    int32_t b_tail[] = {28, 339, 4093};
    int32_t b_ids[23];
    memcpy(b_ids, prompt, 20 * sizeof(int32_t));
    memcpy(b_ids + 20, b_tail, sizeof b_tail);
    int32_t c_ids[] = {504, 3575, 282, 4649, 314};

    float *ra = run_seq(prompt, PN, MODEL_LOGITS_LAST, NULL);
    float *rb = run_seq(b_ids, 23, MODEL_LOGITS_ALL, NULL);
    float *rc = run_seq(c_ids, 5, MODEL_LOGITS_LAST, NULL);

    int32_t a_slots[PN], b_slots[23], c_slots[5];
    cr_assert_eq(kv_alloc(pool, PN, a_slots), 0);
    ModelSeq s0 = {.tokens = prompt, .n_new = 20, .slots = a_slots, .n_ctx = 20, .logits = MODEL_LOGITS_NONE};
    ModelBatch b0 = {.seqs = &s0, .n_seqs = 1};
    cr_assert_eq(model_forward(model, pool, &b0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b0.n_rows, 0);
    cr_assert_eq(s0.logits_row, -1);
    memcpy(b_slots, a_slots, 20 * sizeof(int32_t));
    cr_assert_eq(kv_alloc(pool, 3, b_slots + 20), 0);
    cr_assert_eq(kv_alloc(pool, 5, c_slots), 0);
    ModelSeq seqs[3] = {
        {.tokens = prompt + 20, .n_new = PN - 20, .slots = a_slots, .n_ctx = PN, .logits = MODEL_LOGITS_LAST},
        {.tokens = b_tail, .n_new = 3, .slots = b_slots, .n_ctx = 23, .logits = MODEL_LOGITS_ALL},
        {.tokens = c_ids, .n_new = 5, .slots = c_slots, .n_ctx = 5, .logits = MODEL_LOGITS_LAST},
    };
    ModelBatch b = {.seqs = seqs, .n_seqs = 3};
    cr_assert_eq(model_forward(model, pool, &b, err, sizeof err), 0, "%s", err);
    cr_assert_eq(b.n_rows, 5);
    cr_assert_eq(seqs[0].logits_row, 0);
    cr_assert_eq(seqs[1].logits_row, 1);
    cr_assert_eq(seqs[2].logits_row, 4);
    check_path_diff(path, path_diff(path, b.logits, ra, (size_t)V), "sequence A");
    check_path_diff(path, path_diff(path, b.logits + (size_t)V, rb + (size_t)20 * V, (size_t)3 * V), "sequence B");
    check_path_diff(path, path_diff(path, b.logits + (size_t)4 * V, rc, (size_t)V), "sequence C");
    kv_release(pool, a_slots, PN);
    kv_release(pool, b_slots + 20, 3);
    kv_release(pool, c_slots, 5);
    cr_assert_eq(kv_check(pool), 0);
    cr_assert_eq(kv_n_free(pool), pool->n_slots);
    free(ra);
    free(rb);
    free(rc);
}

Test(model, batch_of_sequences_equals_separate_runs)
{
    batch_vs_separate(SAME_PATH);
    batch_vs_separate(MIXED_PATH);
}

/* 8 sequences of different lengths prefilled together, then 4 greedy decode
 * steps of all 8 in one batch each; each final row is compared with the
 * same history run alone */
static void decode_eight(int path)
{
    char err[512];
    use_backend(path == SAME_PATH ? CPU_NO_BLAS : 0);
    int V = model->cfg.vocab;
    int lens[8] = {3, 9, 17, 5, 31, 12, 1, 25};
    int32_t *slots[8];
    int32_t next[8];
    ModelSeq seqs[8];
    for (int i = 0; i < 8; i++) {
        slots[i] = malloc(40 * sizeof(int32_t));
        cr_assert_eq(kv_alloc(pool, lens[i], slots[i]), 0);
        seqs[i] = (ModelSeq){.tokens = prompt + (PN - lens[i]), .n_new = lens[i], .slots = slots[i],
                             .n_ctx = lens[i], .logits = MODEL_LOGITS_LAST};
    }
    ModelBatch b = {.seqs = seqs, .n_seqs = 8};
    cr_assert_eq(model_forward(model, pool, &b, err, sizeof err), 0, "%s", err);
    int32_t hist[8][40];
    int n_ctx[8];
    for (int i = 0; i < 8; i++) {
        memcpy(hist[i], prompt + (PN - lens[i]), (size_t)lens[i] * sizeof(int32_t));
        n_ctx[i] = lens[i];
    }
    for (int step = 0; step < 4; step++) {
        for (int i = 0; i < 8; i++) {
            top_k(b.logits + (size_t)seqs[i].logits_row * V, V, 1, &next[i]);
            hist[i][n_ctx[i]] = next[i];
            cr_assert_eq(kv_alloc(pool, 1, slots[i] + n_ctx[i]), 0);
            n_ctx[i]++;
            seqs[i] = (ModelSeq){.tokens = &next[i], .n_new = 1, .slots = slots[i], .n_ctx = n_ctx[i]};
        }
        cr_assert_eq(model_forward(model, pool, &b, err, sizeof err), 0, "%s", err);
        cr_assert_eq(b.n_rows, 8);
    }
    for (int i = 0; i < 8; i++) {
        float *alone = run_seq(hist[i], n_ctx[i], MODEL_LOGITS_LAST, NULL);
        char what[64];
        snprintf(what, sizeof what, "sequence %d batched vs alone", i);
        check_path_diff(path, path_diff(path, b.logits + (size_t)seqs[i].logits_row * V, alone, (size_t)V), what);
        free(alone);
        kv_release(pool, slots[i], n_ctx[i]);
        free(slots[i]);
    }
    cr_assert_eq(kv_check(pool), 0);
}

Test(model, decode_batch_of_eight)
{
    decode_eight(SAME_PATH);
    decode_eight(MIXED_PATH);
}

Test(model, explicit_positions_equal_default_ones)
{
    char err[512];
    use_backend(CPU_NO_BLAS);
    int V = model->cfg.vocab;
    int32_t pos[PN], slots[PN];
    for (int i = 0; i < PN; i++) pos[i] = i;
    float *dflt = run_seq(prompt, PN, MODEL_LOGITS_LAST, NULL);
    cr_assert_eq(kv_alloc(pool, PN, slots), 0);
    ModelSeq s = {.tokens = prompt, .n_new = PN, .slots = slots, .n_ctx = PN, .pos = pos};
    ModelBatch b = {.seqs = &s, .n_seqs = 1};
    cr_assert_eq(model_forward(model, pool, &b, err, sizeof err), 0, "%s", err);
    cr_assert(path_diff(SAME_PATH, b.logits, dflt, (size_t)V) == 0);
    /* shifting every position changes the logits (RoPE is applied) but,
     * being relative, only slightly */
    for (int i = 0; i < PN; i++) pos[i] = i + 100;
    cr_assert_eq(model_forward(model, pool, &b, err, sizeof err), 0, "%s", err);
    double d = path_diff(SAME_PATH, b.logits, dflt, (size_t)V);
    cr_assert(d > 0 && d < 2.0, "shifted positions: %g", d);
    kv_release(pool, slots, PN);
    free(dflt);
}

Test(model, bad_batches_fail_with_messages)
{
    char err[512];
    int32_t tok = 5, bad_tok = 49152, slot = 0, bad_slot = 999999;
    ModelSeq s = {.tokens = &bad_tok, .n_new = 1, .slots = &slot, .n_ctx = 1};
    ModelBatch b = {.seqs = &s, .n_seqs = 1};
    cr_assert_neq(model_forward(model, pool, &b, err, sizeof err), 0);
    cr_assert(strstr(err, "token id 49152 out of range"), "%s", err);
    s = (ModelSeq){.tokens = &tok, .n_new = 1, .slots = &bad_slot, .n_ctx = 1};
    cr_assert_neq(model_forward(model, pool, &b, err, sizeof err), 0);
    cr_assert(strstr(err, "slot 999999 out of range"), "%s", err);
    s = (ModelSeq){.tokens = &tok, .n_new = 2, .slots = &slot, .n_ctx = 1};
    cr_assert_neq(model_forward(model, pool, &b, err, sizeof err), 0);
    cr_assert(strstr(err, "n_new"), "%s", err);
    b.n_seqs = 0;
    cr_assert_neq(model_forward(model, pool, &b, err, sizeof err), 0);
    cr_assert(strstr(err, "empty batch"), "%s", err);
    KvPool *small = kv_new(2, 8, 192, K_DTYPE_F16, err, sizeof err);
    s = (ModelSeq){.tokens = &tok, .n_new = 1, .slots = &slot, .n_ctx = 1};
    b.n_seqs = 1;
    cr_assert_neq(model_forward(model, small, &b, err, sizeof err), 0);
    cr_assert(strstr(err, "KV pool made for 2 layers"), "%s", err);
    kv_free(small);
}

/* ---- loader errors (no model needed) --------------------------------------------- */

/* minimal GGUF writer for hand-made files */
typedef struct {
    uint8_t *b;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->b = realloc(b->b, b->cap);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put_u32(Buf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(Buf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(Buf *b, const char *s)
{
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void kv_str(Buf *b, const char *k, const char *v)
{
    put_str(b, k);
    put_u32(b, GGUF_TYPE_STRING);
    put_str(b, v);
}
static void kv_u32(Buf *b, const char *k, uint32_t v)
{
    put_str(b, k);
    put_u32(b, GGUF_TYPE_UINT32);
    put_u32(b, v);
}

static char *write_tmp(Buf *b)
{
    static char path[64];
    strcpy(path, "/tmp/sgl_test_model_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, b->b, b->n), (ssize_t)b->n);
    close(fd);
    return path;
}

/* A tiny llama: 1 layer, n_embd 32, 2 heads, vocab 8, ff 64, all F32. */
static Buf tiny_llama(const char *arch, int skip_tensor, int bad_shape)
{
    Buf b = {0};
    const char *names[] = {"token_embd.weight", "output_norm.weight", "blk.0.attn_norm.weight",
                           "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
                           "blk.0.attn_output.weight", "blk.0.ffn_norm.weight", "blk.0.ffn_gate.weight",
                           "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"};
    int64_t shapes[][2] = {{32, 8}, {32, 1}, {32, 1}, {32, 32}, {32, 32}, {32, 32},
                           {32, 32}, {32, 1}, {32, 64}, {32, 64}, {64, 32}};
    int nt = 11 - (skip_tensor >= 0);
    put(&b, "GGUF", 4);
    put_u32(&b, 3);
    put_u64(&b, (uint64_t)nt);
    put_u64(&b, 7);
    char key[64];
    kv_str(&b, "general.architecture", arch);
#define AK(s) (snprintf(key, sizeof key, "%s.%s", arch, s), key)
    kv_u32(&b, AK("block_count"), 1);
    kv_u32(&b, AK("embedding_length"), 32);
    kv_u32(&b, AK("attention.head_count"), 2);
    kv_u32(&b, AK("feed_forward_length"), 64);
    kv_u32(&b, AK("vocab_size"), 8);
    kv_u32(&b, AK("context_length"), 64);
#undef AK
    uint64_t off = 0;
    for (int i = 0; i < 11; i++) {
        if (i == skip_tensor) continue;
        put_str(&b, names[i]);
        int two = shapes[i][1] > 1;
        put_u32(&b, two ? 2 : 1);
        put_u64(&b, (uint64_t)shapes[i][0]);
        if (two) put_u64(&b, (uint64_t)(i == bad_shape ? shapes[i][1] + 1 : shapes[i][1]));
        put_u32(&b, 0);
        put_u64(&b, off);
        off += (uint64_t)shapes[i][0] * (uint64_t)(i == bad_shape ? shapes[i][1] + 1 : shapes[i][1]) * 4;
        off = (off + 31) / 32 * 32;
    }
    while (b.n % 32) put(&b, "", 1);
    float *data = calloc(off / 4, 4);
    for (uint64_t i = 0; i < off / 4; i++) data[i] = 0.01f * (float)((i * 7) % 13) - 0.05f;
    put(&b, data, off);
    free(data);
    return b;
}

Test(loader, tiny_handmade_llama_loads_and_runs)
{
    char err[512];
    Buf b = tiny_llama("llama", -1, -1);
    char *path = write_tmp(&b);
    Model *m;
    cr_assert_eq(model_load_gguf(path, &m, err, sizeof err), 0, "%s", err);
    model_set_threads(m, 1);
    cr_assert(m->cfg.tied_embeddings);
    KvPool *kv = kv_new(1, 16, 32, K_DTYPE_F32, err, sizeof err);
    int32_t toks[] = {1, 2, 3}, slots[] = {5, 0, 9};
    ModelSeq s = {.tokens = toks, .n_new = 3, .slots = slots, .n_ctx = 3, .logits = MODEL_LOGITS_ALL};
    ModelBatch bt = {.seqs = &s, .n_seqs = 1};
    cr_assert_eq(model_forward(m, kv, &bt, err, sizeof err), 0, "%s", err);
    cr_assert_eq(bt.n_rows, 3);
    for (int i = 0; i < 24; i++) cr_assert(isfinite(bt.logits[i]));
    /* same numbers from the reference backend */
    float fast[24];
    memcpy(fast, bt.logits, sizeof fast);
    set_backend(m, K_BACKEND_CPU_REF, 0);
    cr_assert_eq(model_forward(m, kv, &bt, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(model_backend_name(m), "cpu-ref");
    for (int i = 0; i < 24; i++) cr_assert(fabsf(bt.logits[i] - fast[i]) < 1e-4f, "%d: %g vs %g", i, bt.logits[i], fast[i]);
    kv_free(kv);
    model_free(m);
    unlink(path);
    free(b.b);
}

Test(loader, unknown_architecture_is_named)
{
    char err[512];
    Buf b = tiny_llama("gpt2", -1, -1);
    char *path = write_tmp(&b);
    Model *m = (Model *)1;
    cr_assert_neq(model_load_gguf(path, &m, err, sizeof err), 0);
    cr_assert_null(m);
    cr_assert(strstr(err, "architecture 'gpt2' is not supported"), "%s", err);
    unlink(path);
    free(b.b);
}

Test(loader, missing_tensor_is_named)
{
    char err[512];
    Buf b = tiny_llama("llama", 5, -1);
    char *path = write_tmp(&b);
    Model *m;
    cr_assert_neq(model_load_gguf(path, &m, err, sizeof err), 0);
    cr_assert(strstr(err, "tensor 'blk.0.attn_v.weight' is missing"), "%s", err);
    unlink(path);
    free(b.b);
}

Test(loader, shape_mismatch_is_named)
{
    char err[512];
    Buf b = tiny_llama("llama", -1, 9);
    char *path = write_tmp(&b);
    Model *m;
    cr_assert_neq(model_load_gguf(path, &m, err, sizeof err), 0);
    cr_assert(strstr(err, "blk.0.ffn_up.weight' has shape [32, 65, 1, 1], expected [32, 64]"), "%s", err);
    unlink(path);
    free(b.b);
}

Test(loader, qwen2_gets_neox_rope)
{
    char err[512];
    Buf b = tiny_llama("qwen2", -1, -1);
    char *path = write_tmp(&b);
    GgufFile *f = gguf_open(path, err, sizeof err);
    cr_assert(f, "%s", err);
    ModelConfig cfg;
    cr_assert_eq(model_config_from_gguf(f, &cfg, err, sizeof err), 0, "%s", err);
    cr_assert_eq(cfg.arch, MODEL_ARCH_QWEN2);
    cr_assert_eq(cfg.rope_style, K_ROPE_NEOX);
    gguf_close(f);
    unlink(path);
    free(b.b);
}

Test(loader, rope_frequencies_plain_linear_llama3)
{
    ModelConfig c = {.rope_dim = 128, .rope_theta = 500000.0f};
    float plain[64], lin[64], l3[64], ff[64], withff[64];
    model_rope_inv_freq(&c, NULL, plain);
    cr_assert_float_eq(plain[0], 1.0f, 1e-7);
    cr_assert_float_eq(plain[63], (float)pow(500000.0, -126.0 / 128), 1e-12);
    c.rope_scaling.type = MODEL_ROPE_SCALING_LINEAR;
    c.rope_scaling.factor = 4;
    model_rope_inv_freq(&c, NULL, lin);
    for (int p = 0; p < 64; p++) cr_assert_float_eq(lin[p], plain[p] / 4, 1e-6 * plain[p]);
    /* Llama 3.1 (factor 8, low 1, high 4, original 8192): wavelengths under
     * 2048 keep their frequency, over 8192 are slowed 8x, between blend */
    c.rope_scaling.type = MODEL_ROPE_SCALING_LLAMA3;
    c.rope_scaling.factor = 8;
    c.rope_scaling.low_freq_factor = 1;
    c.rope_scaling.high_freq_factor = 4;
    c.rope_scaling.original_ctx = 8192;
    model_rope_inv_freq(&c, NULL, l3);
    int kept = 0, slowed = 0, blended = 0;
    for (int p = 0; p < 64; p++) {
        double wl = 2 * M_PI / plain[p];
        if (wl < 2048) { cr_assert_float_eq(l3[p], plain[p], 1e-6 * plain[p]); kept++; }
        else if (wl > 8192) { cr_assert_float_eq(l3[p], plain[p] / 8, 1e-6 * plain[p]); slowed++; }
        else { cr_assert(l3[p] < plain[p] && l3[p] > plain[p] / 8); blended++; }
    }
    cr_assert(kept == 29 && blended == 6 && slowed == 29, "%d %d %d", kept, blended, slowed);
    /* p = 30 by hand: wavelength 2944.9, smooth = (8192/wl - 1)/3 */
    double f30 = pow(500000.0, -60.0 / 128), wl30 = 2 * M_PI / f30, sm = (8192 / wl30 - 1) / 3;
    cr_assert_float_eq(l3[30], (float)((1 - sm) * f30 / 8 + sm * f30), 1e-6 * f30);
    /* a rope_freqs tensor replaces the formula: divide by its factors */
    for (int p = 0; p < 64; p++) ff[p] = 1.0f + p;
    model_rope_inv_freq(&c, ff, withff);
    for (int p = 0; p < 64; p++) cr_assert_float_eq(withff[p], plain[p] / (1.0f + p), 1e-6 * plain[p]);
}

/* ---- KV pool ------------------------------------------------------------------------ */

Test(kvpool, alloc_release_and_check)
{
    char err[256];
    KvPool *p = kv_new(2, 10, 64, K_DTYPE_F16, err, sizeof err);
    cr_assert(p, "%s", err);
    cr_assert_eq(kv_bytes(2, 10, 64, K_DTYPE_F16), 2u * 2 * 10 * 128);
    int32_t a[10];
    cr_assert_eq(kv_alloc(p, 4, a), 0);
    for (int i = 0; i < 4; i++) cr_assert_eq(a[i], i);
    cr_assert_eq(kv_n_free(p), 6);
    cr_assert_neq(kv_alloc(p, 7, a + 4), 0, "cannot take more than is free");
    cr_assert_eq(kv_n_free(p), 6);
    cr_assert_eq(kv_alloc(p, 6, a + 4), 0);
    cr_assert_eq(kv_n_free(p), 0);
    kv_release(p, a + 2, 3);
    cr_assert_eq(kv_n_free(p), 3);
    cr_assert_eq(kv_check(p), 0);
    kv_release(p, a + 2, 1); /* double release */
    cr_assert_neq(kv_check(p), 0);
    kv_free(p);
    cr_assert_null(kv_new(2, 10, 64, K_DTYPE_Q4_0, err, sizeof err));
    cr_assert(strstr(err, "Q4_0 not supported"), "%s", err);
}

/* ModelSeq.device_argmax on a host backend: the id is the first maximum of
 * the row a plain forward returns, and no row is handed out for it. */
Test(loader, device_argmax_is_the_first_maximum_of_the_row)
{
    char err[512];
    Buf b = tiny_llama("llama", -1, -1);
    char *path = write_tmp(&b);
    Model *m;
    cr_assert_eq(model_load_gguf(path, &m, err, sizeof err), 0, "%s", err);
    model_set_threads(m, 1);
    /* a host backend: model_kv_new gives a host pool, no device plan */
    KvPool *kv = model_kv_new(m, 32, K_DTYPE_F32, err, sizeof err);
    cr_assert(kv, "%s", err);
    cr_assert_null(kv->mem);
    cr_assert_eq(model_on_device(m), 0);
    cr_assert_eq(model_kv_slots(m), 0);
    int V = m->cfg.vocab;
    int32_t ta[] = {1, 2, 3}, tb[] = {4, 5}, sa[] = {0, 1, 2}, sb[] = {3, 4};
    ModelSeq s[2] = {{.tokens = ta, .n_new = 3, .slots = sa, .n_ctx = 3, .logits = MODEL_LOGITS_LAST},
                     {.tokens = tb, .n_new = 2, .slots = sb, .n_ctx = 2, .logits = MODEL_LOGITS_LAST}};
    ModelBatch bt = {.seqs = s, .n_seqs = 2};
    cr_assert_eq(model_forward(m, kv, &bt, err, sizeof err), 0, "%s", err);
    int want[2];
    for (int q = 0; q < 2; q++) {
        const float *row = bt.logits + (size_t)s[q].logits_row * V;
        want[q] = 0;
        for (int i = 1; i < V; i++)
            if (row[i] > row[want[q]]) want[q] = i;
    }
    s[1].device_argmax = true;
    s[1].argmax = -7;
    cr_assert_eq(model_forward(m, kv, &bt, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s[1].logits_row, -1);
    cr_assert_eq(s[1].argmax, want[1]);
    cr_assert_eq(s[0].logits_row, 0);
    const float *row0 = bt.logits;
    int got0 = 0;
    for (int i = 1; i < V; i++)
        if (row0[i] > row0[got0]) got0 = i;
    cr_assert_eq(got0, want[0]);
    kv_free(kv);
    model_free(m);
    unlink(path);
    free(b.b);
}

/* kv_new_on with a host backend places the pool in host memory, as kv_new. */
Test(kvpool, new_on_a_host_backend_is_a_host_pool)
{
    char err[256];
    KBackendConfig c = {.kind = K_BACKEND_CPU_REF};
    KBackend *be = k_backend_new(&c, err, sizeof err);
    cr_assert(be, "%s", err);
    KvPool *p = kv_new_on(be, 2, 8, 4, K_DTYPE_F16, err, sizeof err);
    cr_assert(p, "%s", err);
    cr_assert_null(p->mem);
    cr_assert_eq(kv_n_free(p), 8);
    cr_assert_null(kv_new_on(be, 2, 8, 4, K_DTYPE_BF16, err, sizeof err), "BF16 is for device pools");
    cr_assert(strstr(err, "BF16"), "%s", err);
    kv_free(p);
    be->destroy(be->ctx);
}
