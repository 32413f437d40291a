/*
 * sgl.h — the public embedding API of libsgl.
 *
 * A C program (or a thin binding) compiles SGL programs, runs them on a VM
 * and, when a model backend is attached, lets their gen/select calls reach a
 * model. Errors are status codes; the message of the last error of a VM is
 * kept in the VM (sgl_last_error) and formatted as
 *     file:line:col: error: message
 * followed, for syntax errors, by the source line and a caret.
 *
 * Threads: a VM and everything obtained from it belong to one thread; a
 * runtime belongs to the thread that opened it (its engine runs on its own
 * thread inside and delivers completions to this one).
 * Ownership: every sgl_*_new/compile/load has a matching *_free; strings
 * returned through char ** are malloc'd and the caller frees them.
 */
#ifndef SGL_H
#define SGL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    SGL_OK = 0,
    SGL_ERR_COMPILE = 1,   /* syntax or compile error (sgl run exits 1) */
    SGL_ERR_RUNTIME = 2,   /* runtime error (sgl run exits 2) */
    SGL_ERR_IO = 3,        /* file missing/unreadable, bad .sglc file */
    SGL_ERR_USAGE = 4      /* bad argument to an API call (unknown function, bad args JSON) */
} sgl_status;

typedef struct sgl_vm sgl_vm;
typedef struct sgl_program sgl_program;
struct RtBackend;          /* runtime/rt.h: the model backend */

/* A VM with no backend: gen/select raise "no model: pass --model or run make model". */
sgl_vm *sgl_vm_new(void);
void sgl_vm_free(sgl_vm *vm);

/* Attach a model backend (borrowed; must outlive the VM's runs). NULL detaches. */
void sgl_vm_set_backend(sgl_vm *vm, struct RtBackend *backend);

/* Where print() writes. Default: stdout. */
void sgl_vm_set_output(sgl_vm *vm, void (*write)(void *ud, const char *s, size_t n), void *ud);

/* Directory that `import "std/..."` resolves against. Default: the
 * SGL_STDLIB environment variable, else "stdlib" next to the executable's
 * parent directory, else "./stdlib". */
void sgl_vm_set_stdlib_path(sgl_vm *vm, const char *dir);

/* The chat template that role blocks use: the name of a module in
 * stdlib/chat/ ("chatml", "llama3", "llama2", "mistral", "qwen"). NULL (the
 * default) picks it from the backend's model (RtBackend.chat_template,
 * mapped by stdlib/chat/detect.sgl); with neither, role blocks add no
 * markers. */
void sgl_vm_set_chat_template(sgl_vm *vm, const char *name);

/* Called after each instance of sgl_run_batch finishes (done of total), on
 * the VM's thread; NULL removes it. */
void sgl_vm_set_progress(sgl_vm *vm, void (*progress)(void *ud, int done, int total), void *ud);

/* The message of the last failed call on this VM ("" when none). */
const char *sgl_last_error(const sgl_vm *vm);

/* Frees memory the library handed over (the strings returned through
 * char **, sgl_program_signature_json's, sgl_tokenize's ids): free() does
 * the same, this is for bindings that cannot reach the C library's. */
void sgl_free(void *p);

/* Compile a source file / buffer (imports are resolved and compiled too and
 * belong to the program). */
sgl_status sgl_compile_file(sgl_vm *vm, const char *path, sgl_program **out);
sgl_status sgl_compile_source(sgl_vm *vm, const char *name, const char *src, size_t len,
                              sgl_program **out);

/* .sglc bytecode files: versioned header and checksum; a truncated or
 * corrupted file is rejected with SGL_ERR_IO and a message. The file holds
 * the program and every module it imports. */
sgl_status sgl_program_save(sgl_vm *vm, const sgl_program *prog, const char *path);
sgl_status sgl_program_load(sgl_vm *vm, const char *path, sgl_program **out);

/* Readable listing of every function's bytecode. */
void sgl_program_disasm(const sgl_program *prog, FILE *out);

void sgl_program_free(sgl_program *prog);

/* ---- arguments ----
 *
 * A program's arguments (LANGUAGE.md §11), built from command-line
 * name=value texts and JSON objects and read by the same JSON reader as
 * json_decode, so every source gives the same value for the same text (an
 * integer beyond int64 is the nearest float everywhere). An sgl_args is not
 * tied to a VM; it is copied at each run, so one may start many runs.
 * Errors leave a message in sgl_args_error. */
typedef struct sgl_args sgl_args;

sgl_args *sgl_args_new(void);           /* empty; NULL when out of memory */
void sgl_args_free(sgl_args *args);

/* Sets argument `name` from the text of a name=value: the value the text
 * reads as when it is JSON (42, 2.5, true, null, "s", [..], {..}), else the
 * text itself as a string. A later set of the same name replaces the value.
 * SGL_ERR_USAGE when name or text is not valid UTF-8. */
sgl_status sgl_args_set(sgl_args *args, const char *name, const char *value_text);

/* Adds the members of a JSON object that are not set yet (what was set
 * first wins: command-line arguments over --args). From text[0..len), with
 * `name` for messages, or from the file at `path`. SGL_ERR_USAGE when the
 * text is not JSON ("NAME:LINE:COL: error: ...") or not an object
 * ("NAME: error: ..."); SGL_ERR_IO when the file cannot be read. */
sgl_status sgl_args_load_json(sgl_args *args, const char *name, const char *text, size_t len);
sgl_status sgl_args_load_file(sgl_args *args, const char *path);

/* The message of the last failed sgl_args_* call ("" when none). */
const char *sgl_args_error(const sgl_args *args);

/* ---- running ---- */

/* Run function `fn` (NULL = "main") of the program with arguments given as a
 * JSON object text (NULL = none; keys are parameter names). On success
 * *result_json (when not NULL) receives {"text": ..., "vars": {...},
 * "value": ...} (compact JSON; values JSON cannot hold are written as their
 * str() text, a state as {"text", "vars"}). */
sgl_status sgl_run(sgl_vm *vm, sgl_program *prog, const char *fn, const char *args_json,
                   char **result_json);

/* sgl_run with arguments from an sgl_args (borrowed; NULL = none). */
sgl_status sgl_run_args(sgl_vm *vm, sgl_program *prog, const char *fn, const sgl_args *args,
                        char **result_json);

/* The final state's text of the last successful sgl_run/sgl_run_args on
 * this VM ("" before one), its length in *len (when not NULL). Owned by the
 * VM; valid until its next run. */
const char *sgl_result_text(const sgl_vm *vm, size_t *len);

/* Run one instance per element of args_json_list (count of them), all
 * concurrently as fibers; results_json[i] receives instance i's result
 * object, or an {"error": "..."} object if that instance failed. Returns
 * SGL_OK unless the batch could not start. */
sgl_status sgl_run_batch(sgl_vm *vm, sgl_program *prog, const char *fn,
                         const char *const *args_json_list, int count, char **results_json);

/* ---- values: arguments and results as C data -----------------------------
 * A small tree of values that belongs to the caller, not to any VM (as
 * SQLite's sqlite3_value or Lua's stack values, but owned): nil, bool, int
 * (64-bit), float, string (bytes with a length, normally UTF-8), list and
 * map (string keys, in insertion order). Each sgl_value_* constructor
 * returns a new value (NULL when out of memory) that the caller frees with
 * sgl_value_free, unless it hands it to a list or map: sgl_list_append and
 * sgl_map_set take ownership of the item, also when they fail. Getters
 * return borrowed pointers that live as long as their container. */
typedef enum { SGL_NIL, SGL_BOOL, SGL_INT, SGL_FLOAT, SGL_STRING, SGL_LIST, SGL_MAP } sgl_type;
typedef struct sgl_value sgl_value;

sgl_value *sgl_value_nil(void);
sgl_value *sgl_value_bool(int b);
sgl_value *sgl_value_int(long long i);
sgl_value *sgl_value_float(double f);
sgl_value *sgl_value_string(const char *s, size_t len);   /* copies s[0..len) */
sgl_value *sgl_value_cstring(const char *s);              /* a NUL-terminated s */
sgl_value *sgl_value_list(void);                          /* empty */
sgl_value *sgl_value_map(void);                           /* empty */
void sgl_value_free(sgl_value *v);                        /* and everything in it; NULL: no-op */

sgl_type sgl_value_type(const sgl_value *v);
int sgl_value_as_bool(const sgl_value *v);                /* 0 unless a true bool */
long long sgl_value_as_int(const sgl_value *v);           /* an int (a float truncated), else 0 */
double sgl_value_as_float(const sgl_value *v);            /* a float or an int, else 0 */
const char *sgl_value_as_string(const sgl_value *v, size_t *len);  /* NUL-terminated; NULL unless a string */
size_t sgl_value_len(const sgl_value *v);                 /* items of a list, entries of a map, bytes of a string */

/* Lists: append (SGL_ERR_USAGE when not a list) and index (NULL out of range). */
sgl_status sgl_list_append(sgl_value *list, sgl_value *item);
sgl_value *sgl_list_get(const sgl_value *list, size_t i);
/* Maps: set (a key already there keeps its place and takes the new value),
 * get by key (NULL when absent), and the i-th entry in insertion order. */
sgl_status sgl_map_set(sgl_value *map, const char *key, sgl_value *value);
sgl_value *sgl_map_get(const sgl_value *map, const char *key);
const char *sgl_map_key(const sgl_value *map, size_t i);
sgl_value *sgl_map_value(const sgl_value *map, size_t i);

/* As compact JSON (malloc'd; NULL when out of memory, a float is NaN or
 * infinite, or a string is not UTF-8; an integral float is written without
 * a fraction, as in results), and from JSON by the library's reader (the
 * rules of sgl_args: an integral number is an int). */
char *sgl_value_to_json(const sgl_value *v);
sgl_status sgl_value_from_json(const char *json, size_t len, sgl_value **out, char *err, size_t errcap);

/* Runs fn (NULL: main) of prog as sgl_run does, with the arguments as a
 * value: NULL (none), a map (by parameter name) or a list (positional, in
 * parameter order). On SGL_OK *result (when not NULL) receives a map
 * {"text": string, "vars": map, "value": ...}; the program's values become
 * values as in JSON results (a function, regex or state is its str() text;
 * a map key that is not a string is its text). Errors as sgl_run:
 * SGL_ERR_USAGE (no such function, a bad argument), SGL_ERR_RUNTIME with
 * "file:line:col: error: ..." in sgl_last_error. */
sgl_status sgl_call(sgl_vm *vm, sgl_program *prog, const char *fn, const sgl_value *args, sgl_value **result);

/* ---- the runtime: a model opened for serving ----------------------------
 * A model file (GGUF) or Hugging Face directory with its tokenizer, the
 * engine that batches every request to it (its own thread), the radix
 * prefix cache and KV pool. Any number of VMs may share one runtime. */
typedef struct sgl_runtime sgl_runtime;

typedef struct {
    const char *model;          /* GGUF file or HF directory; NULL: $SGL_MODEL, else the
                                   default model (models/ above the executable or the
                                   working directory) */
    int threads;                /* compute threads; 0: one per core */
    int kv_tokens;              /* KV pool size in tokens; 0: the engine's default */
    int chunk_size;             /* prefill chunk in tokens; 0: default */
    double itl_target_ms;       /* while sequences decode, the step time that the prompt
                                   tokens joining them are capped to (decode first);
                                   0: default (25 on the CPU, 200 on a GPU),
                                   < 0: no cap but chunk_size */
    int max_running;            /* sequences decoded at once; 0: default */
    int prefix_cache;           /* 1 (default): the radix cache reuses shared prefixes */
    int blas_prefill;           /* 1: BLAS GEMM prefill (faster, not batch-invariant) */
    int has_seed;               /* with seed: the engine's sampling seed */
    unsigned long long seed;
    const char *chat_template;  /* role-block template for attached VMs that set none */
    void *uv_loop;              /* a uv_loop_t *: completions are delivered on that loop
                                   (open, close and every call then run on its thread),
                                   and attached VMs resume their tasks on it by
                                   themselves; NULL: they are delivered while a caller
                                   waits (sgl_run, sgl_session_eval, sgl_runtime_wait) */
    int lazy;                   /* 1: load the model at its first use (no model, or a
                                   bad one, is then that gen/select's runtime error:
                                   programs that never call the model need none) */
    int disable_overlap;        /* 1: no overlap scheduler (the host takes each step's
                                   tokens before it plans the next; SGLang's
                                   --disable-overlap-schedule); 0 (default): overlap
                                   where the model runs on one device */
} sgl_runtime_options;

void sgl_runtime_options_init(sgl_runtime_options *o);
/* SGL_OK and *out, or SGL_ERR_IO with the message in err (no model, a bad
 * file). */
sgl_status sgl_runtime_open(const sgl_runtime_options *o, sgl_runtime **out, char *err, size_t errcap);
/* Requests in flight are dropped (their tasks fail). Detach it from every
 * VM first (or free them). */
void sgl_runtime_close(sgl_runtime *rt);
/* gen/select of vm's programs go to rt (NULL detaches). The VM's chat
 * template, if it set none, is the runtime's. */
void sgl_vm_set_runtime(sgl_vm *vm, sgl_runtime *rt);
/* The model's path, as opened. */
const char *sgl_runtime_model_path(const sgl_runtime *rt);

typedef struct {
    int loaded;                               /* 0 while a lazy runtime's model is not loaded */
    unsigned long long requests;              /* requests finished */
    unsigned long long prompt_tokens;         /* prompt tokens of those requests */
    unsigned long long cached_tokens;         /* of which found in the prefix cache */
    unsigned long long computed_tokens;       /* prompt tokens run through the model */
    unsigned long long generated_tokens;
    double hit_rate;                          /* cached / prompt tokens */
    double gen_tokens_per_s;                  /* decode throughput of the forward passes */
    double seconds;                           /* since the model was loaded */
    unsigned long long in_flight;             /* requests submitted and not finished (0: idle) */
} sgl_runtime_stats;
void sgl_runtime_get_stats(sgl_runtime *rt, sgl_runtime_stats *out);

/* The text of token id (its bytes, maybe not whole UTF-8; owned by the
 * runtime), or NULL when there is no model or no such id. Loads a lazy
 * runtime's model. */
const char *sgl_token_text(sgl_runtime *rt, int id, size_t *len);

/* Token ids of text (add_special: BOS/EOS as the model adds them;
 * parse_special: special-token markers in the text are read as tokens).
 * *ids is malloc'd. SGL_ERR_IO (no model) or SGL_ERR_USAGE (bad text). */
sgl_status sgl_tokenize(sgl_runtime *rt, const char *text, size_t len, int add_special, int parse_special,
                        int **ids, size_t *n, char *err, size_t errcap);

/* Streams the model's continuation of a prompt (no program). options_json:
 * a JSON object of gen's options by their SGL names (max_tokens,
 * temperature, top_p, top_k, min_p, stop, seed, ignore_eos, logprobs, the
 * penalties; NULL: defaults). on_text gets each piece as it is decoded
 * (logprob: of its last token, with "logprobs": true), on_done once, with
 * the finish reason ("stop", "length", "eos"; error set when it failed).
 * Without a uv loop the caller pumps sgl_runtime_wait until on_done.
 * SGL_ERR_USAGE (a bad option or prompt: nothing fires) or SGL_ERR_IO. */
typedef struct {
    void (*on_text)(void *ud, const char *text, size_t len, double logprob);
    void (*on_done)(void *ud, const char *finish, const char *error, int prompt_tokens,
                    int completion_tokens);
    void *ud;
} sgl_stream;
sgl_status sgl_generate(sgl_runtime *rt, const char *prompt, size_t len, const char *options_json,
                        const sgl_stream *stream, char *err, size_t errcap);

/* ---- constraints as a tool (sgl check) -----------------------------------
 * A checker judges texts against one constraint exactly as generation
 * would: the text is tokenized with the model's tokenizer (canonically, or
 * a random valid tokenization), fed through the token masks one token at a
 * time, and then end-of-generation must be allowed. Only the tokenizer is
 * loaded (a vocabulary-only GGUF will do). */
typedef enum {
    SGL_CHECK_REGEX,          /* the constraint regex subset (LANGUAGE.md §9) */
    SGL_CHECK_JSON_SCHEMA,    /* a JSON Schema as JSON text */
    SGL_CHECK_GRAMMAR,        /* GBNF (LANGUAGE.md §9) */
    SGL_CHECK_EBNF            /* SGLang's `ebnf` dialect */
} sgl_check_kind;
typedef struct sgl_checker sgl_checker;
/* Compiles the constraint. SGL_ERR_USAGE with the message when it is
 * invalid or uses an unsupported feature (named); SGL_ERR_IO when there is
 * no tokenizer. */
sgl_status sgl_checker_new(sgl_runtime *rt, sgl_check_kind kind, const char *src, size_t len,
                           sgl_checker **out, char *err, size_t errcap);
/* sgl_checker_new with options (SGL_CHECK_* flags, 0: none):
 * SGL_CHECK_ANY_WHITESPACE lets a JSON Schema take any JSON whitespace
 * between tokens (gen's any_whitespace); other kinds refuse it by name. */
enum { SGL_CHECK_ANY_WHITESPACE = 1 };
sgl_status sgl_checker_new_opts(sgl_runtime *rt, sgl_check_kind kind, const char *src, size_t len,
                                unsigned flags, sgl_checker **out, char *err, size_t errcap);
/* 1 accept, 0 reject (*reject_at: byte offset of the first refused token,
 * or len when only the end was refused), -1 error (message in err).
 * random_segment: a random valid tokenization from seed. */
int sgl_checker_run(sgl_checker *c, const char *text, size_t len, int random_segment,
                    unsigned long long seed, size_t *reject_at, char *err, size_t errcap);
void sgl_checker_free(sgl_checker *c);

/* A JSON text that is one string (surrounding whitespace allowed) decoded
 * by the library's JSON reader: 0 and a malloc'd *out (NUL-terminated,
 * may hold NULs: *len), or -1 with a message. */
int sgl_json_string(const char *json, size_t n, char **out, size_t *len, char *err, size_t errcap);

/* "Did you mean": the closest of cands[0..n) to a misspelt word (edit
 * distance with transpositions, ASCII case ignored, a prefix of at least
 * three bytes counts), or NULL when none is close. The pointer is one of
 * cands. What the library's own messages use (base/suggest.h). */
const char *sgl_suggest(const char *word, const char *const *cands, size_t n);

/* ---- non-blocking runs: tasks ---------------------------------------------
 * A task is one instance of a program in flight. Nothing runs until the
 * driver does: sgl_vm_run_ready runs every fiber that is ready (program
 * code between model calls) and returns; a model completion makes its
 * fiber ready again. With a runtime on a uv loop the VM drives itself on
 * that loop; otherwise call sgl_vm_run_ready, and sgl_runtime_wait when it
 * reports fibers waiting. sgl_run is one task driven to its end. */
typedef struct sgl_task sgl_task;
typedef void (*sgl_task_done_fn)(void *ud, sgl_task *t);

/* Starts fn (NULL: main, or the top level) of prog with args_json (as
 * sgl_run). done (may be NULL) is called once when the task has finished,
 * from inside the driver, after every fiber that was ready has run; it may
 * call anything (free the task, start others). SGL_ERR_USAGE for bad
 * arguments (no task then). */
sgl_status sgl_task_start(sgl_vm *vm, sgl_program *prog, const char *fn, const char *args_json,
                          sgl_task_done_fn done, void *ud, sgl_task **out);
int sgl_task_finished(const sgl_task *t);
/* After it finished: SGL_OK and the result object (as sgl_run's), or
 * SGL_ERR_RUNTIME with the message in sgl_task_error. */
sgl_status sgl_task_result(const sgl_task *t, char **result_json);
const char *sgl_task_error(const sgl_task *t);
/* A task still in flight is abandoned (its model calls are cancelled). */
void sgl_task_free(sgl_task *t);

/* Runs what is ready; returns how many fibers now wait on the model (0:
 * every task has finished). */
int sgl_vm_run_ready(sgl_vm *vm);
/* Blocks until at least one completion of rt has been delivered (its fiber
 * is then ready), or, with events on (sgl_vm_set_events), a piece of
 * streamed text. 0, or -1 when nothing is in flight. Not with a uv loop. */
int sgl_runtime_wait(sgl_runtime *rt);

/* ---- events: streaming a run's progress ---------------------------------- */
/* TEXT: a gen's text as the model produces it (select and gen with choices
 * stream nothing); the pieces of one gen concatenate to a prefix of its
 * result (a stop string is held back). VAR: a variable a gen or select
 * captured into the prompt state, once it is set. Events of a task or run
 * that was cancelled or freed are not reported. */
typedef enum { SGL_EV_TEXT = 1, SGL_EV_VAR = 2 } sgl_event_kind;
typedef struct {
    sgl_event_kind kind;
    struct sgl_task *task;  /* the task it belongs to; NULL for sgl_run / a session */
    int branch;             /* 0: the root fiber; fork branches 1, 2, ... in creation order within the run */
    const char *name;       /* TEXT: the variable the gen captures into, or NULL; VAR: the variable's name */
    const char *data;       /* TEXT: text that became final this step (complete UTF-8); VAR: the value as compact JSON */
    size_t len;
} sgl_event;
typedef void (*sgl_event_fn)(void *ud, const sgl_event *ev);
/* Every run on this VM reports to fn (on the VM's thread, while it runs fibers or
 * receives completions); NULL turns it off. The event's pointers live for the call. */
void sgl_vm_set_events(sgl_vm *vm, sgl_event_fn fn, void *ud);

/* Cancels a task: its in-flight model calls are cancelled in the engine (KV slots
 * freed, computed prefix stays cached) and the task finishes (its done callback fires)
 * with sgl_task_error "cancelled". No-op on a finished task. */
void sgl_task_cancel(sgl_task *t);
/* (The done callback fires inside sgl_task_cancel when no driver is running,
 * else when the driver's ready fibers have run. The cancelled model calls'
 * completions still arrive, in sgl_runtime_wait or the loop: sgl_vm_run_ready
 * counts them as waiting until then.) */

/* ---- limits for untrusted programs (sgl serve) --------------------------- */
/* Per run: at most max_steps bytecode instructions (0: no limit) and max_heap bytes
 * of live heap (0: no limit); past either the run fails with a runtime error naming
 * the limit and the line. */
void sgl_vm_set_limits(sgl_vm *vm, uint64_t max_steps, size_t max_heap);
/* (They apply to runs started after the call; a session's each chunk is a
 * run. The heap a run holds is what its fibers, modules, arguments and state
 * reach, measured at the collector's safe points: a run is stopped at the
 * first one after it passes max_heap, which the collector schedules for no
 * later than max_heap bytes of allocation after the last.) */
/* Program's functions and their parameters, as JSON owned by the caller (free()):
 * {"functions":[{"name":"main","params":[{"name":"q"},{"name":"n","default":3}]}]}
 * (a default is given as JSON when it is a literal; "default_expr": "source text" otherwise). */
char *sgl_program_signature_json(const sgl_program *prog);
/* (The functions are module 0's top-level `fn`s, in source order; a literal
 * is nil, true, false, a number, a string without interpolation, or a list
 * or map of literals. NULL when out of memory.) */

/* ---- sessions: a live top level (the REPL) ---------------------------------
 * Each chunk of source is compiled as more top-level code of one module and
 * run on it: top-level names (let, fn, import, grammar) and the prompt
 * state persist from chunk to chunk. */
typedef struct sgl_session sgl_session;

/* name: the file name messages show (e.g. "<repl>"); imports resolve
 * against the working directory. NULL on no memory. */
sgl_session *sgl_session_new(sgl_vm *vm, const char *name);
void sgl_session_free(sgl_session *s);
/* Compiles and runs one chunk to its end (model calls included: it waits
 * on the runtime). SGL_ERR_COMPILE leaves the session as it was; with
 * *incomplete = 1 the source only ended inside a statement (read another
 * line and pass the whole text again). SGL_ERR_RUNTIME keeps what ran
 * before the error. Messages: sgl_last_error. */
sgl_status sgl_session_eval(sgl_session *s, const char *src, size_t len, int *incomplete);
/* The prompt state so far: {"text": ..., "vars": {...}} (malloc'd). */
char *sgl_session_state_json(sgl_session *s);
/* The state's role segments: bytes [start, end) of the text were written
 * inside a role block (the chat template's markers lie outside them). Up
 * to cap of them into out (out may be NULL); returns how many there are. */
typedef enum { SGL_ROLE_SYSTEM = 0, SGL_ROLE_USER = 1, SGL_ROLE_ASSISTANT = 2 } sgl_role;
typedef struct {
    sgl_role role;
    size_t start, end;
} sgl_segment;
size_t sgl_session_segments(const sgl_session *s, sgl_segment *out, size_t cap);
/* Cuts the prompt text back to its first len bytes (:undo): segments past
 * it go, one across it ends there; variables stay. A later gen's prompt
 * shares the cut text's prefix with the model's cache. SGL_ERR_USAGE when
 * len is past the end or not at a UTF-8 character boundary. */
sgl_status sgl_session_truncate(sgl_session *s, size_t len);
/* Completion candidates that start with prefix[0..len): the session's
 * top-level names, the built-ins and the keywords, each passed to add once
 * (in that order). */
void sgl_session_complete(const sgl_session *s, const char *prefix, size_t len,
                          void (*add)(void *ud, const char *word), void *ud);

/* Asks the runs on vm to stop now, each failing with "interrupted" as a
 * cancelled task does (sgl_task_cancel: model calls cancelled in the
 * engine). Only sets a flag, so it may be called from a signal handler
 * (Ctrl-C): the drivers act on it between waits (sgl_run, sgl_session_eval
 * and the others that block, within a few milliseconds while a gen
 * streams) or at the next sgl_vm_run_ready. A run busy computing stops at
 * its next instruction ("file:line:col: error: interrupted") when its steps
 * are counted: with a step limit set (sgl_vm_set_limits; UINT64_MAX
 * counts without limiting, as sgl repl does). */
void sgl_vm_interrupt(sgl_vm *vm);
/* The prompt text so far (valid until the next eval). */
const char *sgl_session_text(const sgl_session *s, size_t *len);

/* ---- sgl serve: the HTTP server (server/) ----------------------------------
 * One process serving the OpenAI-compatible API, SGLang's native API and
 * compiled programs (programs_dir) over one runtime. sgl_serve opens the
 * model, listens, prints "sgl serve: listening on http://HOST:PORT (model
 * PATH)" through log, and runs until SIGINT/SIGTERM: it then stops
 * accepting, lets requests in flight finish (drain_timeout_s at most, then
 * cancels them) and returns SGL_OK. SGL_ERR_IO (no model, cannot listen)
 * or SGL_ERR_USAGE (a bad option) with the message in err. */
typedef struct {
    sgl_runtime_options runtime;    /* the model and engine (uv_loop and lazy are the server's) */
    const char *host;               /* default "127.0.0.1" */
    int port;                       /* default 30000; 0: any free port */
    const char *programs_dir;       /* *.sgl / *.sglc served under /v1/programs, or NULL */
    const char *api_key;            /* Authorization: Bearer KEY on every route but /health */
    const char *served_model_name;  /* the model id in /v1/models; default: the file's name */
    int quiet;                      /* 1: no access log */
    int max_connections;            /* default 1024 */
    int max_queued;                 /* generation requests waiting beyond max_running; over it 429 (default 256) */
    size_t max_header_bytes;        /* default 16 KiB */
    size_t max_body_bytes;          /* default 8 MiB */
    double read_timeout_s;          /* to receive a whole request (default 30) */
    double idle_timeout_s;          /* keep-alive connection with no request (default 60) */
    double drain_timeout_s;         /* on SIGINT/SIGTERM (default 30) */
    unsigned long long program_max_steps;   /* per program run (default 100M) */
    size_t program_max_heap;        /* bytes per program run (default 256 MiB) */
    void (*log)(void *ud, const char *line);    /* startup and access-log lines (no newline); NULL: stderr */
    void *log_ud;
} sgl_serve_options;

void sgl_serve_options_init(sgl_serve_options *o);
sgl_status sgl_serve(const sgl_serve_options *o, char *err, size_t errcap);

/* ---- the compute device and test checkpoints (issue 11; runtime/device.c) --
 * Runtimes opened after sgl_set_device compute where it says: device "cpu",
 * "cuda", or NULL / "auto" (cuda when this build has it and a GPU is
 * visible, else cpu, the default); mem_fraction: the share of the device's
 * free memory for weights, activations and the KV pool (0: 0.88; ignored on
 * the cpu). Process-wide. SGL_ERR_USAGE with a message for an unknown
 * device, "cuda" in a build or on a machine without it, or a fraction
 * outside (0, 1]. */
sgl_status sgl_set_device(const char *device, double mem_fraction, char *err, size_t errcap);
/* The device runtimes opened now get ("cpu" or "cuda"), after "auto". */
const char *sgl_device_name(void);

/* Tensor parallelism for runtimes opened after it (issue 12): the model
 * split over tp devices of the chosen kind (GPUs 0 .. tp-1), one thread
 * each, joined by the communicator comm: "nccl" (CUDA; libnccl.so.2 is
 * loaded then), "host" (the reference device backend), or NULL / "auto".
 * tp 0 or 1 with comm NULL / "auto": one device, no communicator (the
 * default); a named comm with tp 1 runs the sharded path on one device.
 * Process-wide. SGL_ERR_USAGE for tp outside 0..64 or an unknown comm; a
 * model whose shape does not divide by tp fails to open, naming the
 * dimension. */
sgl_status sgl_set_tensor_parallel(int tp, const char *comm, char *err, size_t errcap);

/* fp8 for runtimes opened after it (issue 11), SGLang's spellings:
 * quantization "fp8" (linear weights as e4m3 with a per-output-channel
 * scale, quantized at load; the lm head stays bf16) or NULL / "none";
 * kv_cache_dtype "fp8_e4m3" (the KV pool in e4m3, scale 1.0: twice the
 * slots), "bf16", or NULL / "auto" (bf16). Device backends only: opening a
 * model on the cpu, or on a GPU below compute capability 8.9, fails naming
 * the option. Process-wide. SGL_ERR_USAGE for another spelling. */
sgl_status sgl_set_quantization(const char *quantization, const char *kv_cache_dtype, char *err, size_t errcap);

/* `sgl make-model`: writes a random-weight Hugging Face checkpoint of a real
 * architecture to out_dir (created): config.json, generation_config.json,
 * model.safetensors (bf16) and tokenizer.json (a byte-level BPE built from
 * the seed, with the architecture's special tokens). arch: "llama-3-8b",
 * "llama-3-70b" (140 GB), "llama-3.2-1b", "qwen2.5-7b" (q/k/v biases); layers > 0 keeps only that
 * many decoder layers. The same seed writes the same bytes on any machine.
 * SGL_OK, or SGL_ERR_USAGE (unknown arch) / SGL_ERR_IO with a message. */
sgl_status sgl_make_model(const char *arch, const char *out_dir, unsigned long long seed, int layers, char *err,
                          size_t errcap);

/* `sgl make-model --gguf TYPE`: the checkpoint make-model wrote in hf_dir as
 * one GGUF file (llama.cpp's layout: llama or qwen2, Q/K rows permuted for
 * llama's rope, Llama 3 rope scaling as rope_freqs) at out_path, matrices
 * in type ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1"), norms and biases
 * f32. SGL_OK, or SGL_ERR_USAGE (an unknown type, a tokenizer that is not
 * make-model's) / SGL_ERR_IO with a message. */
sgl_status sgl_make_gguf(const char *hf_dir, const char *type, const char *out_path, char *err, size_t errcap);

#ifdef __cplusplus
}
#endif
#endif
