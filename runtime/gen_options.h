/*
 * runtime/gen_options.h — the one list of gen()'s options (LANGUAGE.md §6).
 *
 * Everything that knows an option reads it from RT_GEN_OPTIONS: vm/gen.c
 * parses a call's named arguments by it (and refuses names not in it),
 * runtime/rt.c takes the defaults of RtGenParams from it, and the HTTP side
 * maps an OpenAI request field or a key of SGLang's sampling_params onto
 * the same option by the last two columns. Adding an option is one line
 * here, plus its RtGenParams field when it is a scalar; the compiler checks
 * that field's C type against the kind (runtime/rt.c).
 *
 * X(name, kind, lo, hi, dflt, openai, sglang)
 *   name    as SGL writes it, gen(max_tokens: 64); for a scalar kind also
 *           the RtGenParams field it sets (a max_tokens is called that
 *           everywhere)
 *   kind    the C type and how a value is read (RtGenKind below)
 *   lo, hi  the range of an INT or NUM value, of each STOP_IDS item;
 *           INFINITY for no bound
 *   dflt    the value before the call sets it (scalar kinds); the other
 *           kinds default to "none"
 *   openai  the OpenAI chat/completions request field that carries it, or
 *           NULL (json's field, response_format, wraps the schema)
 *   sglang  its key in SGLang's sampling_params (SamplingParams), or NULL
 *           (logprobs is the request's return_logprob there)
 */
#ifndef SGL_RUNTIME_GEN_OPTIONS_H
#define SGL_RUNTIME_GEN_OPTIONS_H

#include <math.h>
#include <stdint.h>

/* clang-format off */
#define RT_GEN_OPTIONS(X)                                                                              \
    /* name               kind      lo         hi         dflt  openai               sglang */         \
    X(name,               NAME,     0,         0,         0,    NULL,                NULL)              \
    X(max_tokens,         INT,      0,         1 << 30,   128,  "max_tokens",        "max_new_tokens")  \
    X(min_tokens,         INT,      0,         1 << 30,   0,    NULL,                "min_new_tokens")  \
    X(stop,               STOP,     0,         0,         0,    "stop",              "stop")            \
    X(stop_token_ids,     STOP_IDS, 0,         INT32_MAX, 0,    NULL,                "stop_token_ids")  \
    X(temperature,        NUM,      0,         INFINITY,  1.0,  "temperature",       "temperature")     \
    X(top_p,              NUM_GT,   0,         1,         1.0,  "top_p",             "top_p")           \
    X(top_k,              INT,      -1,        1 << 30,   -1,   NULL,                "top_k")           \
    X(min_p,              NUM,      0,         1,         0.0,  NULL,                "min_p")           \
    X(frequency_penalty,  NUM,      -INFINITY, INFINITY,  0.0,  "frequency_penalty", "frequency_penalty") \
    X(presence_penalty,   NUM,      -INFINITY, INFINITY,  0.0,  "presence_penalty",  "presence_penalty") \
    X(repetition_penalty, NUM_GT,   0,         INFINITY,  1.0,  NULL,                "repetition_penalty") \
    X(seed,               SEED,     0,         0,         0,    "seed",              "sampling_seed")   \
    X(ignore_eos,         BOOL,     0,         1,         0,    NULL,                "ignore_eos")      \
    X(logprobs,           BOOL,     0,         1,         0,    "logprobs",          NULL)              \
    X(any_whitespace,     BOOL,     0,         1,         0,    NULL,                NULL)              \
    X(regex,              REGEX,    0,         0,         0,    NULL,                "regex")           \
    X(json,               JSON,     0,         0,         0,    "response_format",   "json_schema")     \
    X(grammar,            GRAMMAR,  0,         0,         0,    NULL,                "ebnf")            \
    X(choices,            CHOICES,  0,         0,         0,    NULL,                NULL)              \
    X(type,               TYPE,     0,         0,         0,    NULL,                NULL)
/* clang-format on */

/* How an option's value is read; vm/gen.c has one reader per kind. */
typedef enum {
    RT_GEN_INT,       /* int field: an int in [lo, hi] */
    RT_GEN_NUM,       /* double field: a number in [lo, hi] */
    RT_GEN_NUM_GT,    /* double field: a number in (lo, hi] */
    RT_GEN_BOOL,      /* int field (0 or 1): true or false */
    RT_GEN_SEED,      /* seed and has_seed: any int */
    RT_GEN_NAME,      /* the capture name: a string or nil */
    RT_GEN_STOP,      /* stop and nstop: a string, a list of strings or nil */
    RT_GEN_STOP_IDS,  /* stop_token_ids and nstop_token_ids: a list of ints in [lo, hi] */
    /* output constraints, from here on: at most one per call */
    RT_GEN_REGEX,     /* a re"..." literal or a string (§9) */
    RT_GEN_JSON,      /* a JSON Schema: a map, a bool or a string */
    RT_GEN_GRAMMAR,   /* a grammar block or an EBNF string */
    RT_GEN_CHOICES,   /* a list of strings: gen becomes select */
    RT_GEN_TYPE,      /* "int", "float" or "bool" */
} RtGenKind;

static inline int rt_gen_kind_is_constraint(RtGenKind k) { return k >= RT_GEN_REGEX; }

/* RT_GEN_OPT_max_tokens, ...: an option's index in rt_gen_options. */
typedef enum {
#define RT_GEN_OPT_ENUM(name, kind, lo, hi, dflt, openai, sglang) RT_GEN_OPT_##name,
    RT_GEN_OPTIONS(RT_GEN_OPT_ENUM)
#undef RT_GEN_OPT_ENUM
    RT_GEN_OPTION_COUNT
} RtGenOptionId;

/* The table as data, for code that looks an option up by one of its names. */
typedef struct {
    const char *name;
    RtGenKind kind;
    double lo, hi, dflt;
    const char *openai, *sglang;     /* NULL: none */
} RtGenOption;

extern const RtGenOption rt_gen_options[RT_GEN_OPTION_COUNT];

/* The option called `name` in SGL, or -1. */
int rt_gen_option_find(const char *name);

#endif
