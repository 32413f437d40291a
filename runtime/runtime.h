/*
 * runtime/runtime.h — a model opened for serving: the runtime room's one
 * public object, what include/sgl.h's sgl_runtime is.
 *
 *   Runtime ──owns──► Model (GGUF file or HF directory) + Tokenizer
 *      │      ──owns──► Engine (its thread: scheduler, radix cache, KV pool)
 *      │      ──owns──► RtEngine (the VM-facing backend over the engine)
 *      └──► backend: the RtBackend VMs hold — forwards to the RtEngine,
 *           loading everything at the first gen/select when `lazy`
 *
 * Finding the model: options.model, else $SGL_MODEL, else the default
 * model (models/RUNTIME_DEFAULT_MODEL_FILE in a directory above the
 * executable, then above the working directory).
 *
 * Threads: the Runtime belongs to the thread that opened it (with a loop,
 * that loop's thread); the engine's own thread is inside.
 */
#ifndef SGL_RUNTIME_RUNTIME_H
#define SGL_RUNTIME_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "include/sgl.h"
#include "runtime/rt.h"

#define RUNTIME_DEFAULT_MODEL_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

struct uv_loop_s;
struct CGrammar;
typedef struct Runtime Runtime;

/* The options and statistics are include/sgl.h's (a header of plain
 * declarations): the runtime is what sgl_runtime is, field for field. */
typedef sgl_runtime_options RuntimeOptions;
typedef sgl_runtime_stats RuntimeStats;

void runtime_options_default(RuntimeOptions *o);
/* 0 and *out, or -1 with a message ("no model: ...", "cannot load model
 * PATH: ..."). A lazy runtime only resolves the path here: a missing
 * model is then the error of the first gen/select (programs that never
 * call the model run without one). */
int runtime_open(const RuntimeOptions *o, Runtime **out, char *err, size_t errcap);
void runtime_close(Runtime *rt);

/* Loads the model now (a lazy runtime); 0, or -1 with runtime_error. */
int runtime_load(Runtime *rt);
const char *runtime_error(const Runtime *rt);
const char *runtime_model_path(const Runtime *rt);
struct uv_loop_s *runtime_loop(const Runtime *rt);

/* The backend VMs attach (owned by the runtime). Its wait() with a loop
 * runs the loop once (not from inside a loop callback). */
RtBackend *runtime_backend(Runtime *rt);

void runtime_stats(Runtime *rt, RuntimeStats *out);

/* The engine of a loaded runtime (NULL before it is loaded), for the HTTP
 * server, which submits its requests to the engine directly. */
struct Engine *runtime_engine(Runtime *rt);

/* Token ids of text (flags: TOK_ENC_*, runtime/tokenizer.h). 0 and a
 * malloc'd *ids, or -1 with a message. */
int runtime_tokenize(Runtime *rt, const char *text, size_t len, int add_special, int parse_special,
                     int **ids, size_t *n, char *err, size_t errcap);

/* Streams one completion of a prompt (no program): text pieces as they are
 * decoded, then done. With no loop the caller pumps runtime_backend's
 * wait(). 0, or -1 with a message (a bad request: nothing fires). */
typedef sgl_stream RuntimeStream;
int runtime_generate(Runtime *rt, const char *prompt, size_t len, const RtGenParams *params,
                     const RuntimeStream *cb, char *err, size_t errcap);

/* The same with gen's options as a JSON object text by their SGL names
 * (NULL: defaults); a bad option is an error naming it. */
int runtime_generate_json(Runtime *rt, const char *prompt, size_t len, const char *options_json,
                          const RuntimeStream *cb, char *err, size_t errcap);

/* `sgl check`: judges text against a constraint (kind + source, compiled
 * into *cache on the first call, which the caller frees with cg_unref)
 * with the model's tokenizer, loading only the tokenizer when the model is
 * not loaded. Returns 1 accept, 0 reject (*reject_at: the byte where the
 * first refused token starts), or a negative ERR_* with a message
 * (ERR_CONSTRAINT / ERR_UNSUPPORTED / ERR_LIMIT: the constraint is bad;
 * ERR_IO: no tokenizer). rtc_check (runtime/rt_constrain.h) does the work;
 * flags are its RTC_*. */
int runtime_check(Runtime *rt, RtConstraintKind kind, const char *src, size_t len, const char *text,
                  size_t tlen, unsigned flags, uint64_t seed, struct CGrammar **cache,
                  size_t *reject_at, char *err, size_t errcap);

/* A wake-up on the runtime's loop: poke() (loop thread) makes fn(ud) run
 * once on the next loop iteration, however often it was poked. */
typedef struct RuntimeWaker RuntimeWaker;
RuntimeWaker *runtime_waker_new(Runtime *rt, void (*fn)(void *ud), void *ud);
void runtime_waker_poke(RuntimeWaker *w);
/* Closes its handle (freed by the loop). */
void runtime_waker_free(RuntimeWaker *w);

#endif
