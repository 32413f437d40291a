/*
 * runtime/model.h — a Llama-family decoder: configuration, weights, forward.
 *
 * Owns: ModelConfig, the weight tensors (as KTensor descriptors), loading from
 * GGUF (model_load_gguf), validation shared with other loaders (model_new +
 * model_finish), and the batched forward pass over a token-granular KV pool.
 * Does not own: the KV pool's memory (runtime/kvpool.h, the caller's),
 * tokenization (runtime/tokenizer.h), sampling (runtime/sampler.h), the
 * safetensors loader (runtime/hf.h fills the same structs), kernels
 * (kernels/backend.h).
 *
 * Architectures: llama (also Mistral, SmolLM, Llama 2/3), qwen2 (q/k/v bias,
 * NEOX rope). Other GGUF architectures fail with a message naming them.
 *
 * Loading by another loader (runtime/hf.c):
 *
 *     Model *m = model_new(&cfg, err, errcap);     // layers allocated, tensors empty
 *     m->tok_embd = ...; m->layers[i].wq = ...;    // KTensor descriptors
 *     m->release = my_free; m->release_ctx = mine; // frees whatever backs the data
 *     if (model_finish(m, err, errcap)) { model_free(m); ... }
 *
 * model_finish checks every required tensor is present with the dtype/shape
 * the config implies (message names the tensor), converts 1-D tensors (norm
 * weights, biases) to owned f32 copies when they are F16/BF16, derives the
 * RoPE inverse frequencies, and leaves the model ready for model_forward.
 * Weight matrices may be any dtype in kernels/backend.h except Q8_1/Q8_K.
 *
 * RoPE layout (the one subtle point): llama.cpp's GGUF converter permutes the
 * rows of attn_q/attn_k for LLAMA-arch models so that adjacent pairs
 * (x[2i], x[2i+1]) rotate together (K_ROPE_NORM). Hugging Face checkpoints are
 * unpermuted and rotate halves (x[i], x[i + d/2]) (K_ROPE_NEOX), as do QWEN2
 * GGUF files. A loader sets cfg.rope_style to match its weights; an HF loader
 * uses K_ROPE_NEOX for every architecture and must not permute.
 *
 * Compute backend: chosen by whoever opens the model, through ModelOptions
 * (model_set_options after loading, before the first forward; the default
 * is the fast CPU backend): its kind (kernels/backend.h KBackendKind),
 * worker threads and batch invariance. The model makes it with
 * k_backend_new on first use (model_reserve or model_forward) and owns it;
 * this file and model.c know backends only through kernels/backend.h.
 *
 * Device backends (KBackend.dev, e.g. CUDA): making the backend uploads the
 * weights as bf16 (any loaded dtype is converted; q/k/v and gate/up fused;
 * the layer matrices as fp8 e4m3 with ModelOptions.quantization FP8),
 * model_reserve plans the activations, and the KV pool must be made by
 * model_kv_new (in the backend's memory, bf16) with at most model_kv_slots
 * slots. model_forward then runs runtime/model_dev.c's pass; batch->logits
 * is still host f32, for the asked-for rows only. Greedy outputs are
 * batch-invariant on the CPU only: cuBLASLt picks its kernel (and so its
 * summation order) by the batch's row count.
 *
 * Tensor parallelism (ModelOptions.tp = N; runtime/model_tp.c): N device
 * backends (GPU r for rank r), each with its shard of the weights — q/k/v
 * rows of its n_head/N query and n_head_kv/N KV heads, gate/up rows of its
 * n_ff/N columns, the matching input columns of o and down, vocab/N rows of
 * the lm head; norms and the embedding whole — and its own KV pool holding
 * its KV heads for the same slots. model_kv_new returns rank 0's pool (the
 * one the engine's radix cache and scheduler use, kv_dim = the rank's
 * share) and makes the others beside it; one pool at a time. Each forward
 * runs the same batch on every rank (rank 0 on the caller's thread, ranks
 * 1.. on threads of their own); the per-rank partial sums of o and down are
 * all-reduced, the logit slices all-gathered; rank 0 returns the rows.
 * model_kv_slots is the smallest rank's.
 *
 * Threads: a Model is used by one thread (the engine thread); the forward
 * pass fans out internally to the backend's workers (and, with tp, to one
 * thread per rank).
 */
#ifndef SGL_RUNTIME_MODEL_H
#define SGL_RUNTIME_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"
#include "kernels/comm.h"
#include "runtime/gguf.h"
#include "runtime/kvpool.h"

/* name, GGUF general.architecture string, default rope style for GGUF */
#define MODEL_ARCHS(X)                          \
    X(LLAMA,   "llama",   K_ROPE_NORM)          \
    X(MISTRAL, "mistral", K_ROPE_NORM)          \
    X(QWEN2,   "qwen2",   K_ROPE_NEOX)

typedef enum {
#define X(name, str, rope) MODEL_ARCH_##name,
    MODEL_ARCHS(X)
#undef X
    MODEL_ARCH_COUNT_
} ModelArch;

const char *model_arch_name(ModelArch a);
/* Arch for a GGUF / config.json name ("llama", "qwen2", "mistral"); -1 if unknown. */
int model_arch_from_name(const char *name);

typedef enum {
    MODEL_ROPE_SCALING_NONE = 0,
    MODEL_ROPE_SCALING_LINEAR,  /* positions divided by factor */
    MODEL_ROPE_SCALING_LLAMA3   /* Llama 3.1 frequency-dependent scaling */
} ModelRopeScaling;

typedef struct {
    ModelArch arch;
    int n_layer;
    int n_embd;                 /* hidden size */
    int n_head;
    int n_head_kv;              /* GQA: n_head % n_head_kv == 0 */
    int head_dim;               /* usually n_embd / n_head */
    int rope_dim;               /* dims rotated per head (usually head_dim) */
    int n_ff;                   /* MLP intermediate size */
    int vocab;
    int max_ctx;                /* trained context length */
    float rope_theta;           /* base, e.g. 10000 or 500000 */
    KRopeStyle rope_style;      /* see the top of this file */
    struct {
        ModelRopeScaling type;
        float factor;
        float low_freq_factor;  /* LLAMA3 only */
        float high_freq_factor; /* LLAMA3 only */
        int original_ctx;       /* LLAMA3: original_max_position_embeddings */
    } rope_scaling;
    float rms_eps;
    bool tied_embeddings;       /* output projection is tok_embd */
    bool qkv_bias;              /* bq/bk/bv present */
    int bos_id, eos_id;         /* -1 when unknown */
} ModelConfig;

/* Per-layer tensors: field, GGUF name (after "blk.N."), Hugging Face name
 * (after "model.layers.N."), required (0: only when cfg.qkv_bias). One list
 * so that loaders and validation agree. */
#define MODEL_LAYER_TENSORS(X)                                                 \
    X(attn_norm, "attn_norm.weight",   "input_layernorm.weight",          1) \
    X(wq,        "attn_q.weight",      "self_attn.q_proj.weight",         1) \
    X(wk,        "attn_k.weight",      "self_attn.k_proj.weight",         1) \
    X(wv,        "attn_v.weight",      "self_attn.v_proj.weight",         1) \
    X(bq,        "attn_q.bias",        "self_attn.q_proj.bias",           0) \
    X(bk,        "attn_k.bias",        "self_attn.k_proj.bias",           0) \
    X(bv,        "attn_v.bias",        "self_attn.v_proj.bias",           0) \
    X(wo,        "attn_output.weight", "self_attn.o_proj.weight",         1) \
    X(ffn_norm,  "ffn_norm.weight",    "post_attention_layernorm.weight", 1) \
    X(w_gate,    "ffn_gate.weight",    "mlp.gate_proj.weight",            1) \
    X(w_up,      "ffn_up.weight",      "mlp.up_proj.weight",              1) \
    X(w_down,    "ffn_down.weight",    "mlp.down_proj.weight",            1)

typedef struct {
#define X(field, gguf, hf, req) KTensor field;
    MODEL_LAYER_TENSORS(X)
#undef X
} ModelLayer;

typedef struct ModelScratch ModelScratch;

typedef struct Model {
    ModelConfig cfg;
    KTensor tok_embd;           /* [vocab][n_embd] */
    KTensor out_norm;           /* [n_embd] */
    KTensor output;             /* [vocab][n_embd]; equals tok_embd when tied */
    KTensor rope_freqs;         /* optional [rope_dim/2] frequency divisors (GGUF rope_freqs.weight) */
    ModelLayer *layers;         /* cfg.n_layer, owned */

    /* What backs the tensor data. model_free calls release(release_ctx)
     * when release is set. model_load_gguf sets it to close the GgufFile. */
    void (*release)(void *release_ctx);
    void *release_ctx;
    GgufFile *gguf;             /* the open file for GGUF-loaded models (borrowed
                                   by users, e.g. the tokenizer), else NULL */

    /* ---- internal to model.c: everything below is read and written
     * through the functions of this header (model_set_options,
     * model_inv_freq, ...), never directly. ---- */
    float *rope_inv_freq;       /* [rope_dim/2], by model_finish */
    /* The compute backend, owned: made from the options below on first use,
     * destroyed by model_free or when the options change. */
    const KBackend *backend;
    ModelScratch *scratch;
    /* The backend's options (see ModelOptions), set by model_set_options
     * (runtime/runtime.c, the engine's model_set_threads/batch_invariant). */
    KBackendKind backend_kind;
    unsigned backend_flags;
    int n_threads;
    bool batch_invariant;
    double mem_fraction;        /* ModelOptions.mem_fraction */
    int device_graphs;          /* ModelOptions.device_graphs */
    int quantization;           /* ModelOptions.quantization (a ModelQuant) */
    int kv_cache_dtype;         /* ModelOptions.kv_cache_dtype (a ModelKvCache) */
    struct ModelDevice *device; /* weights/activations on a device backend (model_dev.c) */
    /* Tensor parallelism (ModelOptions.tp / tp_comm; runtime/model_tp.c):
     * the model itself is rank 0; ranks 1.. are copies of this struct that
     * share its host tensors and own their backend and device state. */
    int tp_size;                /* ModelOptions.tp */
    KCommKind tp_comm_kind;     /* ModelOptions.tp_comm */
    const KComm *tp_comm;       /* this rank's communicator (its rank and the
                                   count); NULL without tp */
    struct ModelTp *tp;         /* the ranks (model_tp.c); NULL without tp */
    void *owned_;               /* f32 copies made by model_finish */
} Model;

/* Device backends: how decode-only steps (every sequence brings one new
 * token) of at most MODEL_GRAPH_MAX_ROWS rows are launched (model_dev.c). */
typedef enum {
    /* the default: padded up to the next captured row count and replayed
     * from a graph recorded on first use (backends without graphs: OFF) */
    MODEL_GRAPHS_ON = 0,
    MODEL_GRAPHS_OFF,           /* op by op at their own row count */
    /* op by op at the padded row count: exactly what a replay computes,
     * for tests that compare the two */
    MODEL_GRAPHS_PADDED,
} ModelGraphs;

enum { MODEL_GRAPH_MAX_ROWS = 256 };

/* Weight quantization at load (device backends; SGLang's --quantization):
 * FP8 stores every linear weight of the layers (q|k|v, o, gate|up, down)
 * as fp8 e4m3 with one f32 scale per output channel (max|row| / 448),
 * quantized on the device from the uploaded bf16, half their memory; the
 * embedding, the lm head and the norms stay bf16. Matmuls of <= 8 rows
 * read the fp8 weights with bf16 activations; more rows quantize the
 * activations per token to e4m3 and run cuBLASLt's fp8 GEMM
 * (kernels/backend.h "fp8 e4m3"). */
typedef enum { MODEL_QUANT_NONE = 0, MODEL_QUANT_FP8 } ModelQuant;

/* The device KV pool's dtype (SGLang's --kv-cache-dtype): AUTO and BF16
 * are the activation dtype (bf16); FP8_E4M3 holds K and V as e4m3 with
 * scale 1.0 (SGLang's default without calibrated scales: values rounded to
 * nearest even, saturating at +-448), one byte a value, so twice the slots
 * for the same memory. Slot layout and the radix cache are unchanged. */
typedef enum { MODEL_KV_AUTO = 0, MODEL_KV_BF16, MODEL_KV_FP8_E4M3 } ModelKvCache;

/* "none"/"fp8" and "auto"/"bf16"/"fp8_e4m3" (the flags' spellings) to the
 * enums above: -1 for anything else (NULL: the default). */
int model_quant_from_name(const char *name);
int model_kv_cache_from_name(const char *name);

/* How the model computes: which backend, and how the backend runs. */
typedef struct {
    KBackendKind backend;       /* default K_BACKEND_CPU */
    int n_threads;              /* worker threads; 0 (default): one per core */
    /* true (the default): every token's logits depend only on its own
     * context, never on what else is in the batch or how the prompt was
     * chunked, so greedy output is the same alone, batched, cached or not.
     * The CPU backend then uses its quantized-dot kernels for every batch
     * size. false lets prefill use OpenBLAS sgemm (about 2x faster prefill,
     * but 8-bit activation rounding then differs between batch shapes). */
    bool batch_invariant;
    unsigned backend_flags;     /* the backend's own switches (tests: CPU_NO_SIMD...); default 0 */
    /* Device backends: the share of the device memory free when the
     * backend is made that the model may take (weights, then activations
     * for the largest step, then the KV pool: model_kv_slots); 0: 0.88. */
    double mem_fraction;
    /* Tensor parallelism over `tp` devices of the backend's kind (GPUs 0 ..
     * tp-1; 0 or 1: one device): attention heads (KV heads too), MLP
     * columns and the vocabulary split across ranks, one thread each, an
     * all-reduce after the o and down projections, an all-gather of the
     * logits. Device backends only; n_head_kv, n_ff and vocab must divide
     * by tp (refused by name otherwise). tp_comm: the communicator
     * (kernels/comm.h); AUTO picks NCCL on CUDA, HOST on dev-ref. Naming
     * one with tp 1 runs the same sharded path on one device (a test of
     * it). See "Tensor parallelism" above. */
    int tp;
    KCommKind tp_comm;
    ModelGraphs device_graphs;  /* device backends' decode steps; default ON */
    /* fp8 options (above); host backends refuse anything but the defaults
     * by name when the model is made ready (model_reserve / model_forward) */
    ModelQuant quantization;
    ModelKvCache kv_cache_dtype;
} ModelOptions;

void model_options_default(ModelOptions *o);

/* Loads a GGUF file (any dtype in kernels/backend.h). On success *out is a
 * ready model (free with model_free); on failure returns -1, *out is NULL and
 * err names the file and the problem (unknown architecture, missing tensor,
 * shape mismatch, unsupported tensor type). */
int model_load_gguf(const char *path, Model **out, char *err, size_t errcap);

/* Reads a ModelConfig from GGUF metadata only (no tensors checked). */
int model_config_from_gguf(const GgufFile *f, ModelConfig *cfg, char *err, size_t errcap);

/* For other loaders: see the top of this file. model_new copies cfg. */
Model *model_new(const ModelConfig *cfg, char *err, size_t errcap);
int model_finish(Model *m, char *err, size_t errcap);
void model_free(Model *m);

/* The rope_dim/2 inverse frequencies RoPE uses for cfg: theta^(-2p/rope_dim),
 * then cfg's scaling (linear: / factor; llama3: Llama 3.1's blend), then
 * divided by freq_factors[p] when given (GGUF rope_freqs.weight). */
void model_rope_inv_freq(const ModelConfig *cfg, const float *freq_factors, float *out);

/* Chooses how the model computes. Takes effect at the next model_reserve or
 * model_forward, which make the new backend (a change drops the old one:
 * call it before the first forward to avoid a restart). A new model has
 * model_options_default's. */
void model_set_options(Model *m, const ModelOptions *o);
void model_get_options(const Model *m, ModelOptions *out);

/* model_set_options with only n_threads / batch_invariant changed. */
void model_set_threads(Model *m, int n_threads);
void model_set_batch_invariant(Model *m, bool on);

/* The rope_dim/2 inverse frequencies model_finish derived (model_rope_inv_freq
 * of the config and rope_freqs); owned by the model. */
const float *model_inv_freq(const Model *m);

/* The backend's name ("cpu-avx2", "cpu-ref", "cuda (NVIDIA H100 ...)"), or
 * NULL before it is made. */
const char *model_backend_name(const Model *m);

/* 1 when the model computes on a device backend (made by now). */
int model_on_device(const Model *m);

/* Ranks of the model's tensor parallelism (ModelOptions.tp; 1 without),
 * and its communicator's name ("nccl 2.27.3", "host"; NULL when the
 * sharded path is off or the backend is not made yet). */
int model_tp_ranks(const Model *m);
const char *model_tp_comm_name(const Model *m);

/* KV slots the memory plan leaves after weights and activations (device
 * backends; call after model_reserve); 0 for host backends, whose pool size
 * is the caller's choice. */
int model_kv_slots(const Model *m);

/* A KV pool where the model computes: host memory (kv_new, dtype F16/F32)
 * for host backends; the device's memory in bf16 for device backends (which
 * hold K/V in their activation dtype: F16, the engine's default, is taken
 * as bf16 there; F32 is refused), or F8_E4M3 when ModelOptions.kv_cache_dtype
 * says FP8_E4M3. Makes the backend if needed. */
KvPool *model_kv_new(Model *m, int n_slots, KDtype dtype, char *err, size_t errcap);

/* ---- forward ----------------------------------------------------------
 *
 * A batch is any mix of sequences, each bringing n_new new tokens: a prompt
 * prefill (n_new large), a decode step (n_new = 1), a chunk of a long prompt,
 * or a choice continuation sharing a cached prefix. For each sequence:
 *
 *   slots[0 .. n_ctx)         the KV slots of its whole context, in order;
 *                             the last n_new are where the new tokens' K/V
 *                             are written (the caller allocated them from
 *                             the pool); the earlier ones hold K/V computed
 *                             by previous forwards (possibly another
 *                             sequence's: prefix sharing)
 *   tokens[0 .. n_new)        the new token ids
 *   pos[0 .. n_new) or NULL   their positions; NULL means n_ctx - n_new + i
 *   logits                    which rows of logits to return
 *
 * Output: batch->logits points at n_rows x vocab floats owned by the model,
 * valid until the next forward; seq->logits_row is the first row of that
 * sequence's logits (LAST: one row; ALL: n_new rows, one per new token in
 * order; NONE: no row, logits_row = -1).
 */
typedef enum { MODEL_LOGITS_LAST = 0, MODEL_LOGITS_ALL, MODEL_LOGITS_NONE } ModelLogits;

/* One row of sampling on the device (issue 11; kernels/backend.h,
 * KDevSample, says what it computes): the caller fills the inputs (row from
 * samp_device_row; its offsets are the model's to set), model_sample the
 * outputs. Borrowed arrays stay valid until model_sample returns. */
typedef struct {
    KDevSampleRow row;
    const KDevPenalty *pen;     /* row.n_pen entries */
    const KDevBias *bias;       /* row.n_bias entries */
    const uint32_t *allow;      /* NULL, or a bitset over ModelBatch.n_sample ids */
    /* out */
    int32_t id;                 /* -1: no id was allowed */
    float logprob;              /* with row.lp_mode */
    int n_top;
    int32_t top_id[K_SAMPLE_TOP_MAX];
    float top_lp[K_SAMPLE_TOP_MAX];
} ModelSample;

typedef struct {
    const int32_t *tokens;
    int n_new;
    const int32_t *slots;
    int n_ctx;
    const int32_t *pos;
    ModelLogits logits;
    /* With logits LAST: return only the row's argmax (the first maximum) in
     * `argmax`, not the row (logits_row = -1). On a device backend it is
     * computed there, so the row never crosses to the host (greedy decode). */
    bool device_argmax;
    /* With logits LAST on a device backend, and not device_argmax: the row
     * stays on the device (logits_row = -1) for model_sample to sample. */
    ModelSample *sample;
    /* model_launch only (the overlap scheduler): 0, tokens[0] is the first
     * new token; k > 0, it is the id that the previous model_launch sampled
     * (device_argmax or sample) for its sequence k - 1, read where it is on
     * the device (tokens[0] is then ignored; n_new must be 1). */
    int prev_ref;
    int logits_row;             /* out */
    int32_t argmax;             /* out, with device_argmax */
} ModelSeq;

typedef struct {
    ModelSeq *seqs;
    int n_seqs;
    int n_sample;               /* ids model_sample may pick (the tokenizer's; <= vocab); 0: vocab */
    const float *logits;        /* out */
    int n_rows;                 /* out */
} ModelBatch;

/* Makes room for batches of up to max_tokens new tokens and max_logit_rows
 * rows of logits (allocations happen here, not per forward), and makes the
 * backend if there is none yet. model_forward grows the buffers itself when
 * a batch exceeds them. */
int model_reserve(Model *m, int max_tokens, int max_logit_rows, char *err, size_t errcap);

/* Runs the batch. The pool must have been made for this model (kv_new with
 * n_layer and n_head_kv * head_dim). Fails (-1, message) on bad arguments:
 * token id out of range, slot out of range, n_new > n_ctx, empty batch. */
int model_forward(Model *m, KvPool *kv, ModelBatch *batch, char *err, size_t errcap);

/* After model_forward of the same batch (nothing in between): samples the
 * rows of the sequences with `sample` set where their logits are, on the
 * device, filling each ModelSample's outputs (only those cross to the
 * host). 0, or -1 with a message (also for a host backend, which has no
 * device rows). */
int model_sample(Model *m, ModelBatch *batch, char *err, size_t errcap);

/* ---- launch and wait (the overlap scheduler; issue 11) -------------------
 *
 * model_forward + model_sample split in two so that the host can prepare
 * the next step while the device runs this one:
 *
 *   model_launch(B1)   stages B1's arrays in pinned memory and uploads
 *                      them behind the work already queued, issues its
 *                      kernels, its argmax / sample ops and the download
 *                      of their ids and logprobs (no wait); returns
 *   model_launch(B2)   may follow before B1 is waited: B2's rows with
 *                      prev_ref read B1's sampled ids on the device
 *   model_wait(B1)     blocks until B1 has run; fills B1's argmax and
 *                      ModelSample outputs (as model_forward + model_sample)
 *   model_wait(B2)
 *
 * Invariants:
 *   - Device backends without tp only (others: -1 with a message). At most
 *     two launches are in flight; waits come in launch order, each with the
 *     batch (same arrays, unchanged) that was launched.
 *   - Every row with logits is device_argmax or sample: nothing but ids and
 *     their logprobs comes back (no MODEL_LOGITS_ALL, no host rows: those
 *     need model_forward). Its device masks/penalties are read at launch.
 *   - The outputs equal model_forward + model_sample of the same batch
 *     (the same ops in the same order; only the host's waiting moves).
 *   - prev_ref refers to the launch just before this one; a model_forward
 *     in between voids it (refused by name).
 *   - The host arrays a batch points at (tokens, slots, pos, sample rows)
 *     are read during model_launch only; the caller may reuse them after.
 */
int model_launch(Model *m, KvPool *kv, ModelBatch *batch, char *err, size_t errcap);
int model_wait(Model *m, ModelBatch *batch, char *err, size_t errcap);
/* Launches not yet waited (0 .. 2). */
int model_in_flight(const Model *m);

#endif
