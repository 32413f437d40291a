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
 * Threads: a VM and everything obtained from it belong to one thread.
 * Ownership: every sgl_*_new/compile/load has a matching *_free; strings
 * returned through char ** are malloc'd and the caller frees them.
 */
#ifndef SGL_H
#define SGL_H

#include <stddef.h>
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

#ifdef __cplusplus
}
#endif
#endif
