/*
 * cli/repl.c — `sgl repl`: the interactive prompt, a client of
 * include/sgl.h's sessions as lua.c is of lua.h.
 *
 *   line editor (libedit) ──► entry (lines until the parser stops asking
 *   for more: sgl_session_eval's *incomplete) ──► session ──► the state's
 *   change shown (role segments set apart, generated text coloured)
 *
 * Each entry runs in one live session (sgl_session: top-level names and
 * the prompt state persist). Generated text streams to the screen as the
 * model produces it (sgl_vm_set_events). Ctrl-C during an entry interrupts
 * it (sgl_vm_interrupt from the signal handler: the gen is cancelled in the
 * engine) and the prompt comes back; at the prompt it drops the line;
 * Ctrl-D exits. History: ~/.sgl_history. Completion: the session's names,
 * built-ins and keywords (sgl_session_complete), gen's options
 * (runtime/gen_options.h, the one table) and the `:` commands.
 *
 * When stdin is not a terminal there is no editor, no prompt and no
 * colour: entries are read from stdin and each state change is printed
 * (scripts and tests). Colour needs a terminal on stdout and no NO_COLOR.
 *
 * Without a model everything runs but gen/select, whose error says how to
 * get one (`make model`, or --model / :model PATH).
 */
#include <editline/readline.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runtime/gen_options.h"
#include "sgl.h"

#define EXIT_USAGE 64

/* ---- the `:` commands (declared once) -------------------------------- */

#define REPL_COMMANDS(X)                                                              \
    X(help, "", "this list")                                                          \
    X(state, "", "the whole prompt state (role segments set apart)")                 \
    X(vars, "", "the state's variables")                                              \
    X(reset, "", "a fresh session: no names, an empty state")                        \
    X(undo, "", "drop the last piece the state got (the model's cache keeps the prefix)") \
    X(save, " FILE.sgl", "the session as a program: `sgl run FILE.sgl` ends in this state") \
    X(load, " FILE", "run FILE's code in this session")                              \
    X(model, " PATH", "use the model at PATH (GGUF file or Hugging Face directory)") \
    X(stats, "", "the model's requests, tokens and cache hits so far")              \
    X(tokens, "", "the state's tokens with their ids")

typedef struct Repl Repl;

#define DECLARE(name, argtext, help) static void cmd_##name(Repl *r, const char *arg);
REPL_COMMANDS(DECLARE)
#undef DECLARE

static const struct {
    const char *name, *arg, *help;
    void (*fn)(Repl *r, const char *arg);
} repl_commands[] = {
#define ENTRY(name, arg, help) {":" #name, arg, help, cmd_##name},
    REPL_COMMANDS(ENTRY)
#undef ENTRY
};
#define NCOMMANDS (sizeof repl_commands / sizeof repl_commands[0])

/* ---- state ------------------------------------------------------------- */

struct Repl {
    sgl_vm *vm;
    sgl_session *s;
    sgl_runtime *rt;            /* NULL: no model */
    CliEngineOptions eng;
    int interactive;            /* stdin is a terminal: editor and prompts */
    int color;                  /* stdout is a terminal and NO_COLOR is unset */
    char *history;              /* ~/.sgl_history, or NULL */
    size_t *undo;               /* state lengths before each change, oldest first */
    size_t nundo, capundo;
    char **decls;               /* entries that only declare (fn, import, grammar), for :save */
    size_t ndecls, capdecls;
    /* While an entry runs (interactive): the state's bytes [0, shown) are
     * on the screen, and the text streamed since (unseen, unseen_len) is
     * too, so that when the state grows by it, it is not shown twice. */
    size_t shown;
    char *unseen;
    size_t unseen_len, unseen_cap;
    int line_start;             /* the screen's cursor is at the start of a line */
    char *model_path;           /* :model's path (r->eng.model points here), malloc'd */
};

static Repl *g_repl;
static volatile sig_atomic_t g_evaluating, g_sigint;

static void on_sigint(int sig)
{
    (void)sig;
    g_sigint = 1;
    if (g_evaluating && g_repl) sgl_vm_interrupt(g_repl->vm);
}

#define C_GEN "\033[36m"
#define C_ROLE "\033[1;35m"
#define C_MARK "\033[2m"
#define C_ERR "\033[31m"
#define C_OFF "\033[0m"

static void color_on(Repl *r, const char *c)
{
    if (r->color) fputs(c, stdout);
}

static void color_off(Repl *r)
{
    if (r->color) fputs(C_OFF, stdout);
}

/* ---- events: generated text as it comes ------------------------------------ */

static void show_text(Repl *r, size_t from, size_t to);

/* Shows what the state got since the last time, less the streamed text it
 * starts with (already on the screen). */
static void catch_up(Repl *r)
{
    size_t len;
    const char *text = sgl_session_text(r->s, &len);
    if (len > r->shown) {
        size_t n = len - r->shown, skip = 0;
        if (r->unseen_len <= n && memcmp(text + r->shown, r->unseen, r->unseen_len) == 0) skip = r->unseen_len;
        if (skip < n) show_text(r, r->shown + skip, len);
    }
    if (len >= r->shown) r->unseen_len = 0;
    r->shown = len;
}

static void on_event(void *ud, const sgl_event *ev)
{
    Repl *r = ud;
    if (ev->kind != SGL_EV_TEXT || !r->interactive || ev->len == 0) return;
    catch_up(r);   /* the prompt text before this gen first */
    color_on(r, C_GEN);
    fwrite(ev->data, 1, ev->len, stdout);
    color_off(r);
    fflush(stdout);
    r->line_start = ev->data[ev->len - 1] == '\n';
    if (r->unseen_len + ev->len > r->unseen_cap) {
        size_t cap = (r->unseen_len + ev->len) * 2;
        char *u = realloc(r->unseen, cap);
        if (!u) return;
        r->unseen = u;
        r->unseen_cap = cap;
    }
    memcpy(r->unseen + r->unseen_len, ev->data, ev->len);
    r->unseen_len += ev->len;
}

/* Ends the line the output is on. */
static void end_line(Repl *r)
{
    if (!r->line_start) fputc('\n', stdout);
    r->line_start = 1;
    fflush(stdout);
}

/* ---- showing the state ------------------------------------------------------ */

static const char *role_label(sgl_role role)
{
    switch (role) {
    case SGL_ROLE_SYSTEM: return "system";
    case SGL_ROLE_USER: return "user";
    case SGL_ROLE_ASSISTANT: return "assistant";
    }
    return "?";
}

/* Text [from, to) of the state, role segments each on lines of their own
 * under a [role] label; text outside segments between two of them (the
 * chat template's markers) dimmed. The line is left open (end_line). */
static void show_text(Repl *r, size_t from, size_t to)
{
    size_t len;
    const char *text = sgl_session_text(r->s, &len);
    if (to > len) to = len;
    size_t nseg = sgl_session_segments(r->s, NULL, 0);
    sgl_segment *segs = nseg ? calloc(nseg, sizeof *segs) : NULL;
    if (segs) sgl_session_segments(r->s, segs, nseg);
    else nseg = 0;
    size_t at = from;
    int at_line_start = r->line_start;
    for (size_t i = 0; i < nseg && at < to; i++) {
        if (segs[i].end <= at || segs[i].start >= to) continue;
        if (segs[i].start > at) {
            color_on(r, nseg ? C_MARK : "");
            fwrite(text + at, 1, segs[i].start - at, stdout);
            color_off(r);
            at_line_start = text[segs[i].start - 1] == '\n';
            at = segs[i].start;
        }
        if (!at_line_start) fputc('\n', stdout);
        color_on(r, C_ROLE);
        printf("[%s]", role_label(segs[i].role));
        color_off(r);
        fputc('\n', stdout);
        size_t end = segs[i].end < to ? segs[i].end : to;
        fwrite(text + at, 1, end - at, stdout);
        at_line_start = end > at && text[end - 1] == '\n';
        if (!at_line_start) fputc('\n', stdout);
        at_line_start = 1;
        at = end;
    }
    if (at < to) {
        color_on(r, nseg ? C_MARK : "");
        fwrite(text + at, 1, to - at, stdout);
        color_off(r);
        at_line_start = text[to - 1] == '\n';
    }
    r->line_start = at_line_start;
    fflush(stdout);
    free(segs);
}

static void print_error(Repl *r, const char *msg)
{
    fflush(stdout);
    if (r->color && isatty(STDERR_FILENO)) fputs(C_ERR, stderr);
    fputs(msg, stderr);
    if (r->color && isatty(STDERR_FILENO)) fputs(C_OFF, stderr);
    if (*msg && msg[strlen(msg) - 1] != '\n') fputc('\n', stderr);
    fflush(stderr);
}

/* ---- running an entry --------------------------------------------------------- */

static void push_undo(Repl *r, size_t len)
{
    if (r->nundo == r->capundo) {
        size_t cap = r->capundo ? r->capundo * 2 : 16;
        size_t *u = realloc(r->undo, cap * sizeof *u);
        if (!u) return;
        r->undo = u;
        r->capundo = cap;
    }
    r->undo[r->nundo++] = len;
}

/* An entry that declares names: its first word is fn, let, import or
 * grammar (:save writes these first, when the program still reproduces the
 * state with them). */
static int declares_only(const char *src)
{
    while (*src == ' ' || *src == '\t' || *src == '\n' || *src == '\r') src++;
    return !strncmp(src, "fn ", 3) || !strncmp(src, "let ", 4) || !strncmp(src, "import ", 7) ||
           !strncmp(src, "grammar ", 8);
}

static void keep_decl(Repl *r, const char *src)
{
    if (r->ndecls == r->capdecls) {
        size_t cap = r->capdecls ? r->capdecls * 2 : 16;
        char **d = realloc(r->decls, cap * sizeof *d);
        if (!d) return;
        r->decls = d;
        r->capdecls = cap;
    }
    char *copy = strdup(src);
    if (copy) r->decls[r->ndecls++] = copy;
}

/* Runs src in the session: 1 when it is incomplete (more lines needed),
 * else 0 (ran, or failed with its message printed). */
static int run_entry(Repl *r, const char *src)
{
    size_t before;
    const char *old = sgl_session_text(r->s, &before);
    char *copy = malloc(before + 1);
    if (copy) memcpy(copy, old, before + 1);
    int incomplete = 0;
    r->shown = before;
    r->unseen_len = 0;
    r->line_start = 1;
    g_sigint = 0;
    g_evaluating = 1;
    sgl_status st = sgl_session_eval(r->s, src, strlen(src), &incomplete);
    g_evaluating = 0;
    if (st == SGL_ERR_COMPILE && incomplete) {
        free(copy);
        return 1;
    }
    size_t after;
    const char *now = sgl_session_text(r->s, &after);
    int changed = !copy || after != before || memcmp(copy, now, before) != 0;
    if (changed && copy && after >= before && memcmp(copy, now, before) == 0) {
        push_undo(r, before);
        catch_up(r);
    } else if (changed) {
        push_undo(r, 0);   /* not a growth (cannot happen today): undo clears it */
        show_text(r, 0, after);
    }
    end_line(r);
    free(copy);
    if (st == SGL_OK) {
        if (declares_only(src)) keep_decl(r, src);
    } else {
        const char *msg = sgl_last_error(r->vm);
        if (!strcmp(msg, "interrupted")) print_error(r, "interrupted (the gen was cancelled)");
        else print_error(r, msg);
    }
    return 0;
}

/* ---- the runtime ---------------------------------------------------------- */

/* Opens the model of r->eng (lazy: it loads at the first gen). Without one
 * the session runs everything else. */
static void open_model(Repl *r, int lazy, int quiet)
{
    char err[1024];
    sgl_runtime *rt = NULL;
    if (cli_runtime_open(&r->eng, lazy, &rt, err, sizeof err) != 0) {
        if (!quiet || r->eng.model) print_error(r, err);
        if (!quiet && !r->rt)
            fprintf(stderr, "no model: everything but gen and select works (make model fetches the default; "
                            ":model PATH picks one)\n");
        return;
    }
    sgl_vm_set_runtime(r->vm, rt);
    if (r->rt) sgl_runtime_close(r->rt);
    r->rt = rt;
}

/* ---- commands -------------------------------------------------------------- */

static void cmd_help(Repl *r, const char *arg)
{
    (void)arg;
    printf("Each entry runs in this session: `let` and `fn` names and the prompt state\n"
           "persist; an unfinished statement continues on the next line. Ctrl-C stops\n"
           "a running gen, Ctrl-D leaves. Tab completes names, options and commands.\n\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char left[40];
        snprintf(left, sizeof left, "%s%s", repl_commands[i].name, repl_commands[i].arg);
        printf("  %-18s %s\n", left, repl_commands[i].help);
    }
    (void)r;
}

static void cmd_state(Repl *r, const char *arg)
{
    (void)arg;
    size_t len;
    sgl_session_text(r->s, &len);
    if (len == 0) {
        printf("(the state is empty)\n");
        return;
    }
    r->line_start = 1;
    show_text(r, 0, len);
    end_line(r);
}

static void cmd_vars(Repl *r, const char *arg)
{
    (void)arg;
    char *js = sgl_session_state_json(r->s);
    sgl_value *st = NULL;
    if (!js || sgl_value_from_json(js, strlen(js), &st, NULL, 0) != SGL_OK) {
        free(js);
        print_error(r, "error: out of memory");
        return;
    }
    sgl_value *vars = sgl_map_get(st, "vars");
    size_t n = sgl_value_len(vars);
    if (n == 0) printf("(no variables)\n");
    for (size_t i = 0; i < n; i++) {
        char *v = sgl_value_to_json(sgl_map_value(vars, i));
        printf("%s = %s\n", sgl_map_key(vars, i), v ? v : "?");
        free(v);
    }
    sgl_value_free(st);
    free(js);
}

static int new_session(Repl *r)
{
    sgl_session *s = sgl_session_new(r->vm, "<repl>");
    if (!s) {
        print_error(r, "error: out of memory");
        return -1;
    }
    if (r->s) sgl_session_free(r->s);
    r->s = s;
    r->nundo = 0;
    for (size_t i = 0; i < r->ndecls; i++) free(r->decls[i]);
    r->ndecls = 0;
    return 0;
}

static void cmd_reset(Repl *r, const char *arg)
{
    (void)arg;
    if (new_session(r) == 0) printf("(a fresh session)\n");
}

static void cmd_undo(Repl *r, const char *arg)
{
    (void)arg;
    if (r->nundo == 0) {
        printf("(nothing to undo)\n");
        return;
    }
    size_t len = r->undo[--r->nundo];
    if (sgl_session_truncate(r->s, len) != SGL_OK) {
        print_error(r, sgl_last_error(r->vm));
        return;
    }
    printf("(undone: the state is back to %zu bytes)\n", len);
}

/* text as an SGL string literal (LANGUAGE.md §2 escapes). */
static void write_literal(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\n': fputs("\\n", f); break;
        case '\t': fputs("\\t", f); break;
        case '\r': fputs("\\r", f); break;
        case '\\': fputs("\\\\", f); break;
        case '"': fputs("\\\"", f); break;
        case '$': fputs("\\$", f); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(f, "\\u{%x}", c);
            else fputc((char)c, f);
        }
    }
    fputc('"', f);
}

/* A value (from the state's JSON) as an SGL literal. */
static void write_value(FILE *f, const sgl_value *v)
{
    size_t n;
    const char *s;
    char buf[64];
    switch (sgl_value_type(v)) {
    case SGL_NIL: fputs("nil", f); return;
    case SGL_BOOL: fputs(sgl_value_as_bool(v) ? "true" : "false", f); return;
    case SGL_INT: fprintf(f, "%lld", sgl_value_as_int(v)); return;
    case SGL_FLOAT:
        snprintf(buf, sizeof buf, "%.17g", sgl_value_as_float(v));
        fputs(buf, f);
        if (!strpbrk(buf, ".eEn")) fputs(".0", f);
        return;
    case SGL_STRING:
        s = sgl_value_as_string(v, &n);
        write_literal(f, s, n);
        return;
    case SGL_LIST:
        fputc('[', f);
        for (size_t i = 0; i < sgl_value_len(v); i++) {
            if (i) fputs(", ", f);
            write_value(f, sgl_list_get(v, i));
        }
        fputc(']', f);
        return;
    case SGL_MAP:
        fputc('{', f);
        for (size_t i = 0; i < sgl_value_len(v); i++) {
            if (i) fputs(", ", f);
            write_literal(f, sgl_map_key(v, i), strlen(sgl_map_key(v, i)));
            fputs(": ", f);
            write_value(f, sgl_map_value(v, i));
        }
        fputc('}', f);
        return;
    }
}

/* The program :save writes: the declaring entries (when with_decls), then
 * the state's text as literals (one statement per segment or gap, a
 * segment's role in a comment: role blocks would add the template's
 * markers again, which the text already holds), then its variables. */
static int write_program(Repl *r, const char *path, int with_decls)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "#!/usr/bin/env sgl\n"
               "# Saved by sgl repl (:save): `sgl run` on this file ends in the session's\n"
               "# state text; its fn/let/import/grammar entries come first.\n");
    for (size_t i = 0; with_decls && i < r->ndecls; i++) {
        fputs(r->decls[i], f);
        if (r->decls[i][0] && r->decls[i][strlen(r->decls[i]) - 1] != '\n') fputc('\n', f);
    }
    size_t len;
    const char *text = sgl_session_text(r->s, &len);
    size_t nseg = sgl_session_segments(r->s, NULL, 0);
    sgl_segment *segs = nseg ? calloc(nseg, sizeof *segs) : NULL;
    if (segs) sgl_session_segments(r->s, segs, nseg);
    else nseg = 0;
    size_t at = 0;
    for (size_t i = 0; i <= nseg && at < len; i++) {
        size_t start = i < nseg ? segs[i].start : len;
        if (start > at) {
            write_literal(f, text + at, start - at);
            fputc('\n', f);
            at = start;
        }
        if (i < nseg && segs[i].end > at) {
            fprintf(f, "# %s:\n", role_label(segs[i].role));
            write_literal(f, text + at, segs[i].end - at);
            fputc('\n', f);
            at = segs[i].end;
        }
    }
    free(segs);
    char *js = sgl_session_state_json(r->s);
    sgl_value *st = NULL;
    if (js && sgl_value_from_json(js, strlen(js), &st, NULL, 0) == SGL_OK) {
        sgl_value *vars = sgl_map_get(st, "vars");
        for (size_t i = 0; i < sgl_value_len(vars); i++) {
            fputs("state[", f);
            write_literal(f, sgl_map_key(vars, i), strlen(sgl_map_key(vars, i)));
            fputs("] = ", f);
            write_value(f, sgl_map_value(vars, i));
            fputc('\n', f);
        }
    }
    sgl_value_free(st);
    free(js);
    return fclose(f) == 0 ? 0 : -1;
}

/* 1 when the program at path, run on a VM of its own (no model), ends in
 * the session's state text. */
static void discard(void *ud, const char *s, size_t n)
{
    (void)ud;
    (void)s;
    (void)n;
}

static int reproduces(Repl *r, const char *path)
{
    sgl_vm *vm = sgl_vm_new();
    sgl_program *p = NULL;
    int same = 0;
    if (!vm) return 0;
    sgl_vm_set_output(vm, discard, NULL);
    if (vm && sgl_compile_file(vm, path, &p) == SGL_OK && sgl_run(vm, p, NULL, NULL, NULL) == SGL_OK) {
        size_t a, b;
        const char *x = sgl_result_text(vm, &a), *y = sgl_session_text(r->s, &b);
        same = a == b && memcmp(x, y, a) == 0;
    }
    sgl_program_free(p);
    sgl_vm_free(vm);
    return same;
}

static void cmd_save(Repl *r, const char *arg)
{
    if (!*arg) {
        print_error(r, ":save needs a file name (:save FILE.sgl)");
        return;
    }
    /* the declarations may print or append when run again: then without them */
    errno = 0;
    int ok = write_program(r, arg, 1) == 0 && reproduces(r, arg);
    if (!ok) ok = write_program(r, arg, 0) == 0 && reproduces(r, arg);
    if (!ok) {
        char msg[512];
        snprintf(msg, sizeof msg, "error: cannot save the session to %s: %s", arg,
                 errno ? strerror(errno) : "the program would not give the same state");
        print_error(r, msg);
        return;
    }
    size_t len;
    sgl_session_text(r->s, &len);
    printf("(saved: %s, %zu bytes of state)\n", arg, len);
}

static void cmd_load(Repl *r, const char *arg)
{
    FILE *f = *arg ? fopen(arg, "rb") : NULL;
    if (!f) {
        char msg[512];
        snprintf(msg, sizeof msg, "error: cannot read %s: %s", *arg ? arg : "(no file given)",
                 *arg ? strerror(errno) : "use :load FILE");
        print_error(r, msg);
        return;
    }
    char *src = NULL;
    size_t n = 0, cap = 0, got;
    char buf[8192];
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        if (n + got + 1 > cap) {
            cap = (n + got + 1) * 2;
            char *more = realloc(src, cap);
            if (!more) break;
            src = more;
        }
        memcpy(src + n, buf, got);
        n += got;
    }
    fclose(f);
    if (!src) return;
    src[n] = '\0';
    if (run_entry(r, src)) print_error(r, "error: the file ends inside a statement");
    free(src);
}

static void cmd_model(Repl *r, const char *arg)
{
    if (!*arg) {
        printf("%s\n", r->rt ? sgl_runtime_model_path(r->rt) : "(no model)");
        return;
    }
    char *path = strdup(arg);
    if (!path) return;
    const char *old = r->eng.model;
    r->eng.model = path;
    sgl_runtime *before = r->rt;
    open_model(r, 0, 0);
    if (r->rt != before) {
        printf("(model: %s)\n", sgl_runtime_model_path(r->rt));
        free(r->model_path);
        r->model_path = path;
    } else {
        r->eng.model = old;   /* the message said why; the path is not kept */
        free(path);
    }
}

static void cmd_stats(Repl *r, const char *arg)
{
    (void)arg;
    if (!r->rt) {
        printf("(no model)\n");
        return;
    }
    sgl_runtime_stats s;
    sgl_runtime_get_stats(r->rt, &s);
    if (!s.loaded) {
        printf("(the model is not loaded yet: %s)\n", sgl_runtime_model_path(r->rt));
        return;
    }
    printf("requests %llu (in flight %llu), prompt tokens %llu, cached %llu (hit rate %.1f%%), computed %llu, "
           "generated %llu, %.1f tok/s in forward passes\n",
           s.requests, s.in_flight, s.prompt_tokens, s.cached_tokens, 100.0 * s.hit_rate, s.computed_tokens,
           s.generated_tokens, s.gen_tokens_per_s);
}

static void cmd_tokens(Repl *r, const char *arg)
{
    (void)arg;
    if (!r->rt) {
        printf("(no model: no tokenizer)\n");
        return;
    }
    size_t len;
    const char *text = sgl_session_text(r->s, &len);
    int *ids = NULL;
    size_t n = 0;
    char err[512];
    if (sgl_tokenize(r->rt, text, len, 1, 1, &ids, &n, err, sizeof err) != SGL_OK) {
        print_error(r, err);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *piece = sgl_token_text(r->rt, ids[i], &pl);
        printf("%6d  ", ids[i]);
        write_literal(stdout, piece ? piece : "", piece ? pl : 0);
        fputc('\n', stdout);
    }
    printf("(%zu tokens)\n", n);
    free(ids);
}

/* A line that starts with ':' (after spaces): the command, else 0. */
static int run_command(Repl *r, const char *line)
{
    while (*line == ' ' || *line == '\t') line++;
    if (*line != ':') return 0;
    size_t n = strcspn(line, " \t\r\n");
    const char *arg = line + n;
    while (*arg == ' ' || *arg == '\t') arg++;
    char argbuf[1024];
    snprintf(argbuf, sizeof argbuf, "%s", arg);
    size_t al = strlen(argbuf);
    while (al && (argbuf[al - 1] == '\n' || argbuf[al - 1] == '\r' || argbuf[al - 1] == ' ')) argbuf[--al] = 0;
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strlen(repl_commands[i].name) == n && !strncmp(line, repl_commands[i].name, n)) {
            repl_commands[i].fn(r, argbuf);
            fflush(stdout);
            return 1;
        }
    char msg[256];
    snprintf(msg, sizeof msg, "unknown command %.*s (:help lists them)", (int)n, line);
    print_error(r, msg);
    return 1;
}

/* ---- completion -------------------------------------------------------------- */

static char **cands;
static size_t ncands, capcands;

static void add_cand(void *ud, const char *w)
{
    (void)ud;
    for (size_t i = 0; i < ncands; i++)
        if (!strcmp(cands[i], w)) return;
    if (ncands == capcands) {
        size_t cap = capcands ? capcands * 2 : 64;
        char **c = realloc(cands, cap * sizeof *c);
        if (!c) return;
        cands = c;
        capcands = cap;
    }
    char *copy = strdup(w);
    if (copy) cands[ncands++] = copy;
}

static char *next_cand(const char *text, int state)
{
    static size_t at;
    (void)text;
    if (state == 0) at = 0;
    return at < ncands ? strdup(cands[at++]) : NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)end;
    for (size_t i = 0; i < ncands; i++) free(cands[i]);
    ncands = 0;
    size_t n = strlen(text);
    int first_word = 1;
    for (int i = 0; i < start; i++)
        if (rl_line_buffer[i] != ' ' && rl_line_buffer[i] != '\t') first_word = 0;
    if (text[0] == ':' && first_word) {
        for (size_t i = 0; i < NCOMMANDS; i++)
            if (!strncmp(repl_commands[i].name, text, n)) add_cand(NULL, repl_commands[i].name);
    } else if (g_repl) {
        sgl_session_complete(g_repl->s, text, n, add_cand, NULL);
        for (int i = 0; i < RT_GEN_OPTION_COUNT; i++)
            if (!strncmp(rt_gen_options[i].name, text, n)) add_cand(NULL, rt_gen_options[i].name);
    }
    rl_attempted_completion_over = 1;
    if (ncands == 0) return NULL;
    return rl_completion_matches(text, next_cand);
}

/* ---- reading entries ------------------------------------------------------------ */

/* One line, without its newline (malloc'd), or NULL at the end of input.
 * *interrupted: Ctrl-C at the prompt. */
static char *read_line(Repl *r, const char *prompt, int *interrupted)
{
    *interrupted = 0;
    if (r->interactive) {
        g_sigint = 0;
        char *line = readline(prompt);
        if (g_sigint) {
            *interrupted = 1;
            free(line);
            return NULL;
        }
        return line;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    return line;
}

static void remember(Repl *r, const char *entry)
{
    if (!r->interactive || !*entry) return;
    add_history(entry);
    if (r->history) write_history(r->history);
}

static void loop(Repl *r)
{
    char *entry = NULL;
    size_t elen = 0;
    for (;;) {
        int interrupted;
        char *line = read_line(r, entry ? "...> " : "sgl> ", &interrupted);
        if (interrupted) {
            /* Ctrl-C at the prompt: the entry so far is dropped */
            printf("^C\n");
            free(entry);
            entry = NULL;
            elen = 0;
            continue;
        }
        if (!line) {
            /* the input ended inside a statement: its error says where */
            if (entry && run_entry(r, entry)) print_error(r, sgl_last_error(r->vm));
            break;
        }
        if (!entry && run_command(r, line)) {
            remember(r, line);
            free(line);
            continue;
        }
        if (!entry && !line[strspn(line, " \t")]) {
            free(line);
            continue;
        }
        size_t ll = strlen(line);
        char *grown = realloc(entry, elen + ll + 2);
        if (!grown) {
            free(line);
            break;
        }
        entry = grown;
        memcpy(entry + elen, line, ll);
        elen += ll;
        entry[elen++] = '\n';
        entry[elen] = '\0';
        free(line);
        if (run_entry(r, entry)) continue;   /* incomplete: read another line */
        entry[elen - 1] = '\0';
        remember(r, entry);
        free(entry);
        entry = NULL;
        elen = 0;
    }
    free(entry);
    if (r->interactive) printf("\n");
}

/* ---- sgl repl ------------------------------------------------------------------- */

static const char repl_help[] =
    "usage: sgl repl [--model PATH] [engine options]\n"
    "\n"
    "The interactive prompt: each entry runs in one live session (names and the\n"
    "prompt state persist), the state's change is shown after it, generated\n"
    "text streams as it comes. :help lists the commands. With stdin not a\n"
    "terminal it reads entries from stdin and prints each change (no prompts).\n"
    "History is kept in ~/.sgl_history; NO_COLOR turns colour off.\n"
    "\n"
    "options:\n" CLI_ENGINE_RUN_HELP;

int cmd_repl(int argc, char **argv)
{
    Repl r;
    memset(&r, 0, sizeof r);
    cli_engine_options_init(&r.eng);
    for (int i = 0; i < argc; i++) {
        int used = cli_engine_parse_option(&r.eng, argc, argv, &i);
        if (used < 0) return EXIT_USAGE;
        if (used) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(repl_help, stdout);
            return 0;
        }
        return cli_unknown_option("repl", argv[i], repl_help);
    }
    r.interactive = isatty(STDIN_FILENO);
    const char *nc = getenv("NO_COLOR");
    r.color = isatty(STDOUT_FILENO) && !(nc && *nc);
    r.vm = sgl_vm_new();
    if (!r.vm || new_session(&r) < 0) return 1;
    g_repl = &r;
    sgl_vm_set_events(r.vm, on_event, &r);
    sgl_vm_set_limits(r.vm, UINT64_MAX, 0);   /* steps counted: Ctrl-C stops a busy loop too */
    open_model(&r, 1, !r.interactive);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);   /* no SA_RESTART: the line editor's read returns */

    if (r.interactive) {
        const char *home = getenv("HOME");
        if (home && *home) {
            size_t n = strlen(home) + 32;
            r.history = malloc(n);
            if (r.history) snprintf(r.history, n, "%s/.sgl_history", home);
        }
        using_history();
        stifle_history(1000);
        if (r.history) read_history(r.history);
        rl_attempted_completion_function = complete;
        rl_completion_append_character = '\0';   /* `gen(` and `max_tokens:` follow without a space */
        rl_basic_word_break_characters = " \t\n\"\\'`@><=;|&{([,+-*/%!)}]";
        rl_completer_word_break_characters = (char *)rl_basic_word_break_characters;
        printf("sgl %s: SGL programs, one entry at a time (:help; Ctrl-D leaves)\n", SGL_VERSION_STRING);
    }
    loop(&r);

    g_repl = NULL;
    for (size_t i = 0; i < ncands; i++) free(cands[i]);
    free(cands);
    for (size_t i = 0; i < r.ndecls; i++) free(r.decls[i]);
    free(r.decls);
    free(r.undo);
    free(r.unseen);
    free(r.history);
    sgl_session_free(r.s);
    sgl_vm_free(r.vm);
    if (r.rt) sgl_runtime_close(r.rt);
    free(r.model_path);
    return 0;
}
