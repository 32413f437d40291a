/*
 * cli/cli.h — what the subcommands share: the options that pick and start a
 * model (the engine), and the engine-backed subcommands.
 */
#ifndef SGL_CLI_H
#define SGL_CLI_H

#include <stddef.h>

#include "sgl.h"

#define SGL_VERSION_STRING "0.1.0"

/* Subcommands that need the inference engine, added to main's table. */
#define CLI_ENGINE_COMMANDS(X)                                                        \
    X(generate, "continue a prompt with the model: sgl generate [options] \"prompt\"") \
    X(tokenize, "print the token ids of a text: sgl tokenize [--model M] \"text\"")                      \
    X(check, "judge a text against a constraint: sgl check --regex RE \"text\"")           \
    X(serve, "HTTP server: OpenAI and SGLang APIs, programs as endpoints: sgl serve [--port N]") \
    X(make_model, "write a random-weight HF checkpoint: sgl make-model --arch A --out DIR")

/* Lines added to `sgl run --help` (and used by generate's help). */
#define CLI_ENGINE_RUN_HELP                                                          \
    "  --model PATH       a GGUF file or Hugging Face directory (default: the\n"     \
    "                     model `make model` fetches; also $SGL_MODEL)\n"            \
    "  --threads N        compute threads (default: one per core)\n"                 \
    "  --device D         cpu or cuda (default: cuda when this build has it and a\n" \
    "                     GPU is visible)\n"                                        \
    "  --mem-fraction F   share of free GPU memory for weights + activations +\n"   \
    "                     KV cache (default 0.88)\n"                                \
    "  --tp N             tensor parallelism over N GPUs (0..N-1) of one host:\n"    \
    "                     heads, MLP columns and vocabulary split, NCCL\n"         \
    "                     all-reduce (default 1: one GPU)\n"                        \
    "  --tp-comm C        nccl, host (dev-ref) or auto; naming one with --tp 1\n"  \
    "                     runs the sharded path on one GPU\n"                       \
    "  --quantization Q   none or fp8: linear weights as fp8 e4m3 with per-channel\n" \
    "                     scales (GPU, compute capability 8.9+; lm head bf16)\n"   \
    "  --kv-cache-dtype T auto, bf16 or fp8_e4m3 (GPU; scale 1.0: twice the\n"    \
    "                     KV slots)\n"                                             \
    "  --chunk-size N     prompt tokens prefilled per step at most (default 512)\n"  \
    "  --itl-target MS    decode first: while sequences decode, prompt tokens join\n" \
    "                     a step only as far as it is expected to take MS ms\n"     \
    "                     (measured cost per row; at least 16 a step; default 25\n" \
    "                     on the CPU, 200 on a GPU; 0: no cap but --chunk-size)\n" \
    "  --kv-tokens N      KV cache size in tokens\n"                                 \
    "  --max-running N    sequences in one batch at most (default 64; on a GPU 256)\n" \
    "  --seed S           seed for requests that give none\n"                        \
    "  --no-prefix-cache  turn the radix prefix cache off (for comparison)\n"        \
    "  --disable-overlap-schedule  take each step's tokens before planning the\n"   \
    "                     next (default on a GPU: the next step runs while the\n"   \
    "                     host detokenizes this one; outputs are the same)\n"       \
    "  --blas-prefill     OpenBLAS for prompt chunks (the weights the CPU's int8\n" \
    "                     VNNI kernel does not take); outputs may then depend on\n"  \
    "                     batching and chunking (default: batch-invariant)\n"        \
    "  --stats            print prompt/cached/generated tokens, hit rate, tok/s\n"      \
    "  --chat-template NAME  the template of role blocks (stdlib/chat/NAME.sgl:\n"   \
    "                     chatml, llama3, llama2, mistral, qwen); default: the\n"     \
    "                     model's own\n"

typedef struct {
    const char *model;          /* --model, or NULL for the default */
    const char *chat_template;  /* --chat-template, or NULL for the model's */
    const char *device;         /* --device, or NULL: auto */
    double mem_fraction;        /* --mem-fraction, 0: default */
    int tp;                     /* --tp, 0: one device */
    const char *tp_comm;        /* --tp-comm, or NULL: auto */
    const char *quantization;   /* --quantization, or NULL: none */
    const char *kv_cache_dtype; /* --kv-cache-dtype, or NULL: auto */
    int threads, chunk_size, kv_tokens, max_running;
    double itl_target_ms;       /* --itl-target; 0: default, < 0: off (given as 0) */
    int prefix_cache;           /* 1 unless --no-prefix-cache */
    int blas_prefill;           /* --blas-prefill */
    int disable_overlap;        /* --disable-overlap-schedule */
    int stats;
    int has_seed;
    unsigned long long seed;
} CliEngineOptions;

typedef struct CliEngine CliEngine;

void cli_engine_options_init(CliEngineOptions *o);

/* If argv[*i] is an engine option, consumes it (and its value, advancing *i)
 * and returns 1; returns 0 if it is not one; -1 (message printed) if its
 * value is missing or bad. */
int cli_engine_parse_option(CliEngineOptions *o, int argc, char **argv, int *i);

/* A runtime with the options' settings (lazy: the model loads at first
 * use). 0, or -1 with a message in err. */
int cli_runtime_open(const CliEngineOptions *o, int lazy, sgl_runtime **out, char *err, size_t errcap);

/* Attaches a backend to the VM that loads the model at the first gen/select.
 * Returns 0, or an exit status after printing the error. */
int cli_engine_start(const CliEngineOptions *o, sgl_vm *vm, CliEngine **out);

/* Prints --stats figures to stderr, if asked for. */
void cli_engine_report(CliEngine *e);

/* Closes the runtime; call after the VM is freed. */
void cli_engine_stop(CliEngine *e);

/* "sgl CMD: unknown option OPT (did you mean '--X'?) (see sgl CMD --help)"
 * on stderr: the candidates are the flags that CMD's help text names, so
 * the help is the one list of a command's options. Returns 64 (usage). */
int cli_unknown_option(const char *cmd, const char *opt, const char *help);

/* The whole file at path, NUL-terminated (malloc'd; its length in *len),
 * or NULL with errno set. */
char *cli_read_file(const char *path, size_t *len);

#endif
