/*
 * runtime/hf.h — loading a Hugging Face model directory.
 *
 * Owns: reading config.json (into a ModelConfig) and generation_config.json
 * (into HfGenConfig: sampling defaults and EOS ids), mapping Hugging Face
 * tensor names onto the Model's KTensor descriptors, and keeping the
 * safetensors mappings alive for the Model's lifetime.
 * Does not own: the safetensors format (runtime/safetensors.h), the Model
 * structure, validation and forward (runtime/model.h), tokenizer.json and
 * tokenizer_config.json (runtime/tokenizer.h).
 *
 * A directory holds config.json, model.safetensors or shards with
 * model.safetensors.index.json, and optionally generation_config.json:
 *
 *   model.embed_tokens.weight                      [vocab, hidden]
 *   model.layers.N.input_layernorm.weight          [hidden]
 *   model.layers.N.self_attn.{q,k,v}_proj.weight   [heads*head_dim, hidden] (k, v: kv_heads)
 *   model.layers.N.self_attn.{q,k,v}_proj.bias     qwen2 only
 *   model.layers.N.self_attn.o_proj.weight         [hidden, heads*head_dim]
 *   model.layers.N.post_attention_layernorm.weight [hidden]
 *   model.layers.N.mlp.{gate,up}_proj.weight       [ff, hidden]
 *   model.layers.N.mlp.down_proj.weight            [hidden, ff]
 *   model.norm.weight                              [hidden]
 *   lm_head.weight                                 [vocab, hidden] (absent when tied)
 *
 * PyTorch's [out, in] is the kernels' ne[0] = in, ne[1] = out, so weights
 * are used in place from the mapping (F32, F16 or BF16; a tensor whose data
 * is not aligned to its element size is copied). Q/K rows are NOT permuted:
 * Hugging Face checkpoints rotate halves, so cfg.rope_style = K_ROPE_NEOX.
 *
 * Architectures (model_type): llama (Llama 2/3, SmolLM), mistral, qwen2.
 * rope_scaling: none/"default", "linear", "llama3"; others are refused. A
 * sliding_window (mistral, qwen2 with use_sliding_window) caps max_ctx at
 * the window, inside which full attention is what the model computes.
 * Errors name the file and the key or tensor: unknown architecture, missing
 * tensor, shape mismatch, unsupported dtype, a tensor sgl would ignore (so
 * an unsupported variant is not run silently wrong).
 *
 * Ownership: hf_load returns a Model freed by model_free (which unmaps the
 * files). Config structs are plain values.
 */
#ifndef SGL_RUNTIME_HF_H
#define SGL_RUNTIME_HF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/model.h"
#include "runtime/sampler.h"

#define HF_MAX_EOS 8

/* generation_config.json, plus the EOS/BOS ids of config.json. Fields with
 * a has_ flag are only meaningful when it is set. */
typedef struct {
    bool has_do_sample, do_sample;
    bool has_temperature;
    float temperature;
    bool has_top_p;
    float top_p;
    bool has_top_k;
    int top_k;
    bool has_min_p;
    float min_p;
    bool has_repetition_penalty;
    float repetition_penalty;
    bool has_max_new_tokens;
    int max_new_tokens;
    int32_t eos_ids[HF_MAX_EOS];   /* generation_config's first, then config.json's */
    int n_eos;
    int bos_id, pad_id;            /* -1 when unknown */
} HfGenConfig;

void hf_gen_config_init(HfGenConfig *g);

/* config.json text -> cfg (and its eos/bos ids into gen, which may be NULL).
 * `what` names the source in messages. Returns 0 or -1 with a message. */
int hf_parse_config(const char *json, size_t len, const char *what, ModelConfig *cfg,
                    HfGenConfig *gen, char *err, size_t errcap);

/* generation_config.json text -> gen (merged: eos ids are added). */
int hf_parse_generation_config(const char *json, size_t len, const char *what,
                               HfGenConfig *gen, char *err, size_t errcap);

/* Both files of a directory (generation_config.json is optional; gen may be
 * NULL). */
int hf_read_config(const char *dir, ModelConfig *cfg, HfGenConfig *gen, char *err,
                   size_t errcap);

/* Loads the directory into a ready Model (model_finish done). gen, if not
 * NULL, receives the generation defaults. Returns 0, or -1 with *out NULL
 * and a message. */
int hf_load(const char *dir, Model **out, HfGenConfig *gen, char *err, size_t errcap);

/* Sampling defaults from generation_config.json, as vLLM applies them: each
 * of temperature, top_p, top_k, min_p, repetition_penalty that the file sets
 * overrides p; do_sample is not consulted (a request's own parameters
 * decide). EOS ids: p->eos_ids points into g (keep g alive while p is used,
 * i.e. until samp_new has copied them). */
void hf_gen_apply(const HfGenConfig *g, SampParams *p);

#endif
