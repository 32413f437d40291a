/*
 * cli/main.c — the `sgl` command: a table of subcommands, each a client of
 * the public API (include/sgl.h) or of the runtime's headers.
 *
 * Only this folder decides to exit or write to stderr. Exit statuses follow
 * LANGUAGE.md §11: 0 ok, 1 compile error (or a file that can't be read),
 * 2 runtime error, 64 bad command line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "runtime/gen_options.h"
#include "sgl.h"

#define EXIT_USAGE 64

/* ---- subcommand table (declared once) ---------------------------------- */

#define SGL_COMMANDS(X)                                                           \
    X(run, "run a program: sgl run FILE [name=value ...] (FILE - reads stdin)")  \
    X(repl, "the interactive prompt: sgl repl [--model M]")                      \
    X(compile, "compile to bytecode: sgl compile FILE [-o OUT.sglc] [--disasm]") \
    CLI_ENGINE_COMMANDS(X)

#define DECLARE(name, help) int cmd_##name(int argc, char **argv);
SGL_COMMANDS(DECLARE)
#undef DECLARE

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} Command;

static const Command commands[] = {
#define ENTRY(name, help) {#name, cmd_##name, help},
    SGL_COMMANDS(ENTRY)
#undef ENTRY
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* The commands' names as typed: the C names with '-' for '_'
 * (make_model: make-model), built once. */
static const char *const *command_names(void)
{
    static char dashed[N_COMMANDS][24];
    static const char *names[N_COMMANDS];
    if (!names[0])
        for (size_t i = 0; i < N_COMMANDS; i++) {
            snprintf(dashed[i], sizeof dashed[i], "%s", commands[i].name);
            for (char *c = dashed[i]; *c; c++)
                if (*c == '_') *c = '-';
            names[i] = dashed[i];
        }
    return names;
}

/* The command called `word`, or NULL. */
static const Command *find_command(const char *word)
{
    const char *const *names = command_names();
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(word, names[i])) return &commands[i];
    return NULL;
}

/* The closest of the commands and the extra names to a misspelt word. */
static const char *suggest_command(const char *word, const char *const *extra, size_t nextra)
{
    const char *names[N_COMMANDS + 8];
    size_t nn = 0;
    for (; nn < N_COMMANDS; nn++) names[nn] = command_names()[nn];
    for (size_t i = 0; i < nextra && nn < sizeof names / sizeof names[0]; i++) names[nn++] = extra[i];
    return sgl_suggest(word, names, nn);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: sgl COMMAND [options]\n\n"
                 "sgl compiles and runs SGL programs: prompts with control flow that call\n"
                 "a language model through gen, select and fork.\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(out, "  %-10s %s\n", command_names()[i], commands[i].help);
    fprintf(out, "\n`sgl COMMAND --help` (or `sgl help COMMAND`) describes each command;\n"
                 "`sgl help gen` lists gen's options, `sgl help exit` the exit statuses.\n");

    fprintf(out, "\nalso:\n"
                 "  sgl FILE.sgl [name=value ...]   sgl run FILE.sgl (a script: #!/usr/bin/env sgl)\n"
                 "  sgl -e 'CODE' [name=value ...]  run CODE as a program\n");
}

/* ---- helpers ------------------------------------------------------------ */

static int has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* All of stdin, malloc'd (NULL on a read error). */
static char *read_stdin(size_t *len)
{
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            char *more = realloc(buf, cap * 2);
            if (!more) {
                free(buf);
                return NULL;
            }
            buf = more;
            cap *= 2;
        }
    }
    if (buf && ferror(stdin)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Loads a program from source, from a .sglc file, from stdin ("-") or
 * from the text of -e (code, named "<-e>"). Prints the error and returns
 * the exit status on failure, 0 on success. */
static int load_program_or_code(sgl_vm *vm, const char *path, const char *code, sgl_program **prog)
{
    sgl_status st;
    if (code) {
        st = sgl_compile_source(vm, "<-e>", code, strlen(code), prog);
    } else if (!strcmp(path, "-")) {
        size_t len = 0;
        char *src = read_stdin(&len);
        if (!src) {
            fprintf(stderr, "sgl: cannot read the program from stdin: %s\n", strerror(errno));
            return 1;
        }
        st = sgl_compile_source(vm, "<stdin>", src, len, prog);
        free(src);
    } else {
        st = has_suffix(path, ".sglc") ? sgl_program_load(vm, path, prog) : sgl_compile_file(vm, path, prog);
    }
    if (st == SGL_OK)
        return 0;
    const char *msg = sgl_last_error(vm);
    fprintf(stderr, "%s%s", msg, (*msg && msg[strlen(msg) - 1] == '\n') ? "" : "\n");
    return 1;
}

static int load_program(sgl_vm *vm, const char *path, sgl_program **prog)
{
    return load_program_or_code(vm, path, NULL, prog);
}

static void print_error(sgl_vm *vm)
{
    const char *msg = sgl_last_error(vm);
    fprintf(stderr, "%s%s", msg, (*msg && msg[strlen(msg) - 1] == '\n') ? "" : "\n");
}

static int status_exit(sgl_status st)
{
    switch (st) {
    case SGL_OK: return 0;
    case SGL_ERR_RUNTIME: return 2;
    case SGL_ERR_USAGE: return EXIT_USAGE;
    default: return 1;
    }
}

/* ---- sgl run ------------------------------------------------------------ */

static const char run_help[] =
    "usage: sgl run FILE [name=value ...] [options]\n"
    "       sgl FILE [name=value ...] [options]     (FILE is not a command's name)\n"
    "       sgl -e CODE [name=value ...] [options]\n"
    "\n"
    "Runs fn main (or --fn NAME) of FILE (.sgl source or .sglc bytecode; -\n"
    "reads the source from stdin) or of CODE, and prints the final prompt\n"
    "state's text. A source file may start with #!/usr/bin/env sgl and run as\n"
    "a script. name=value arguments are parsed as JSON when they parse, else\n"
    "taken as strings.\n"
    "\n"
    "options:\n"
    "  --fn NAME          entry point (default: main)\n"
    "  --args FILE.json   arguments as a JSON object (command-line ones win)\n"
    "  --json             print {\"text\", \"vars\", \"value\"} on one line instead\n"
    "  --batch FILE.jsonl one instance per line (a JSON object of arguments), all\n"
    "                     concurrently; one result object per line, in input order;\n"
    "                     name=value and --args apply to every line (name=value\n"
    "                     over the line's own, the line's over --args)\n" CLI_ENGINE_RUN_HELP
    "\n"
    "exit status: 0 ok, 1 compile error, 2 runtime error, 64 bad usage\n";

/* The lines of a --batch file, each checked to be a JSON object of
 * arguments (empty lines skipped). NULL with a message in err on failure. */
static char **read_jsonl(const char *path, int *count, char *err, size_t errcap)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char **lines = NULL;
    int n = 0, cap = 0, lineno = 0;
    char *line = NULL;
    size_t linecap = 0;
    ssize_t len;
    err[0] = 0;
    while ((len = getline(&line, &linecap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0)
            continue;
        sgl_args *check = sgl_args_new();
        int bad = !check || sgl_args_load_json(check, path, line, (size_t)len) != SGL_OK;
        sgl_args_free(check);
        if (bad) {
            snprintf(err, errcap, "%s:%d: each line must be a JSON object of arguments", path, lineno);
            for (int i = 0; i < n; i++)
                free(lines[i]);
            free(lines);
            free(line);
            fclose(f);
            return NULL;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            lines = realloc(lines, (size_t)cap * sizeof *lines);
        }
        lines[n++] = strdup(line);
    }
    free(line);
    if (ferror(f)) {   /* a directory, say: not an empty batch */
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        for (int i = 0; i < n; i++)
            free(lines[i]);
        free(lines);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *count = n;
    return lines;
}

/* The value of a name=value text, by sgl_args_set's rule: what it reads as
 * when it is JSON, else the text as a string. */
static sgl_value *pair_value(const char *text)
{
    sgl_value *v = NULL;
    char e[8];
    if (sgl_value_from_json(text, strlen(text), &v, e, sizeof e) == SGL_OK)
        return v;
    return sgl_value_cstring(text);
}

/* Gives every --batch line the command-line arguments: a name=value wins
 * over the line's own member of that name, and the line's members win over
 * the --args file's (the order sgl_args keeps for one run). Rewrites
 * lines[i] in place. 0, or -1 with a message in err. */
static int batch_apply_args(char **lines, int count, const char **pairs, int n_pairs, const char *args_file,
                            char *err, size_t errcap)
{
    sgl_value *defaults = NULL;
    if (!n_pairs && !args_file)
        return 0;
    if (args_file) {
        size_t len = 0;
        char *text = cli_read_file(args_file, &len);
        if (!text || sgl_value_from_json(text, len, &defaults, err, errcap) != SGL_OK ||
            sgl_value_type(defaults) != SGL_MAP) {
            if (!text)
                snprintf(err, errcap, "%s: %s", args_file, strerror(errno));
            else if (defaults)
                snprintf(err, errcap, "%s: error: the arguments must be a JSON object", args_file);
            free(text);
            sgl_value_free(defaults);
            return -1;
        }
        free(text);
    }
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        sgl_value *line = NULL;
        if (sgl_value_from_json(lines[i], strlen(lines[i]), &line, err, errcap) != SGL_OK) {
            rc = -1;
            break;
        }
        for (int k = 0; k < n_pairs; k++) {
            const char *eq = strchr(pairs[k], '=');
            char *name = strndup(pairs[k], (size_t)(eq - pairs[k]));
            sgl_map_set(line, name, pair_value(eq + 1));
            free(name);
        }
        for (size_t k = 0; defaults && k < sgl_value_len(defaults); k++) {
            const char *key = sgl_map_key(defaults, k);
            if (!sgl_map_get(line, key)) {
                char *j = sgl_value_to_json(sgl_map_value(defaults, k));
                sgl_value *copy = NULL;
                if (j && sgl_value_from_json(j, strlen(j), &copy, err, errcap) == SGL_OK)
                    sgl_map_set(line, key, copy);
                free(j);
            }
        }
        char *json = sgl_value_to_json(line);
        sgl_value_free(line);
        if (!json) {
            snprintf(err, errcap, "out of memory");
            rc = -1;
            break;
        }
        free(lines[i]);
        lines[i] = json;
    }
    sgl_value_free(defaults);
    return rc;
}

/* --batch progress on stderr, when it is a terminal. */
static void progress_bar(void *ud, int done, int total)
{
    (void)ud;
    int width = 40, filled = total ? (int)((long)done * width / total) : width;
    fprintf(stderr, "\r[%.*s%*s] %d/%d", filled, "########################################",
            width - filled, "", done, total);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

static int run_main(int argc, char **argv, const char *code);

int cmd_run(int argc, char **argv) { return run_main(argc, argv, NULL); }

/* sgl run, or with code (sgl -e CODE): no FILE then, every other word is an
 * argument or an option. */
static int run_main(int argc, char **argv, const char *code)
{
    const char *file = NULL, *fn = NULL, *args_file = NULL, *batch_file = NULL;
    const char **pairs = calloc((size_t)argc + 1, sizeof *pairs);   /* the name=value texts, for --batch */
    int n_pairs = 0;
    int as_json = 0;
    CliEngineOptions eng;
    cli_engine_options_init(&eng);
    sgl_args *args = sgl_args_new();
    int rc = 0;
    if (!args) {
        fprintf(stderr, "sgl run: out of memory\n");
        return 1;
    }

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int used = cli_engine_parse_option(&eng, argc, argv, &i);
        if (used < 0) {
            rc = EXIT_USAGE;
            goto out;
        }
        if (used)
            continue;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(run_help, stdout);
            goto out;
        } else if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if (!strcmp(a, "--fn") || !strcmp(a, "--args") || !strcmp(a, "--batch")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sgl run: %s needs a value\n", a);
                rc = EXIT_USAGE;
                goto out;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--fn")) fn = v;
            else if (!strcmp(a, "--args")) args_file = v;
            else batch_file = v;
        } else if (a[0] == '-' && a[1] == '-') {
            rc = cli_unknown_option("run", a, run_help);
            goto out;
        } else if (!file && !code) {
            file = a;
        } else {
            const char *eq = strchr(a, '=');
            if (!eq || eq == a) {
                fprintf(stderr, "sgl run: argument '%s' is not name=value\n", a);
                rc = EXIT_USAGE;
                goto out;
            }
            char *name = strndup(a, (size_t)(eq - a));
            sgl_status st = sgl_args_set(args, name, eq + 1);
            if (pairs)
                pairs[n_pairs++] = a;
            free(name);
            if (st != SGL_OK) {
                fprintf(stderr, "sgl run: %s\n", sgl_args_error(args));
                rc = EXIT_USAGE;
                goto out;
            }
        }
    }
    if (!file && !code) {
        fputs(run_help, stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    if (args_file && sgl_args_load_file(args, args_file) != SGL_OK) {
        fprintf(stderr, "%s\n", sgl_args_error(args));
        rc = EXIT_USAGE;
        goto out;
    }

    sgl_vm *vm = sgl_vm_new();
    sgl_program *prog = NULL;
    CliEngine *engine = NULL;
    if ((rc = load_program_or_code(vm, file, code, &prog)) != 0)
        goto out_vm;
    if ((rc = cli_engine_start(&eng, vm, &engine)) != 0)
        goto out_vm;

    if (batch_file) {
        int count = 0;
        char err[512];
        char **lines = read_jsonl(batch_file, &count, err, sizeof err);
        if (!lines && count == 0 && err[0]) {
            fprintf(stderr, "sgl run: %s\n", err);
            rc = EXIT_USAGE;
            goto out_vm;
        }
        if (batch_apply_args(lines, count, pairs, n_pairs, args_file, err, sizeof err) != 0) {
            fprintf(stderr, "sgl run: %s\n", err);
            for (int i = 0; i < count; i++)
                free(lines[i]);
            free(lines);
            rc = EXIT_USAGE;
            goto out_vm;
        }
        char **results = calloc((size_t)count + 1, sizeof *results);
        if (isatty(STDERR_FILENO))
            sgl_vm_set_progress(vm, progress_bar, NULL);
        sgl_status st = sgl_run_batch(vm, prog, fn, (const char *const *)lines, count, results);
        if (st != SGL_OK) {
            print_error(vm);
            rc = status_exit(st);
        } else {
            for (int i = 0; i < count; i++) {
                fputs(results[i] ? results[i] : "{\"error\":\"no result\"}", stdout);
                fputc('\n', stdout);
                if (results[i] && strncmp(results[i], "{\"error\"", 8) == 0)
                    rc = 2;
            }
        }
        for (int i = 0; i < count; i++) {
            free(lines[i]);
            free(results[i]);
        }
        free(lines);
        free(results);
        fflush(stdout);
        cli_engine_report(engine);
        goto out_vm;
    }

    char *result = NULL;
    sgl_status st = sgl_run_args(vm, prog, fn, args, as_json ? &result : NULL);
    fflush(stdout);
    if (st != SGL_OK) {
        print_error(vm);
        rc = status_exit(st);
    } else if (as_json) {
        printf("%s\n", result);
    } else {
        size_t len;
        const char *text = sgl_result_text(vm, &len);
        if (len) {
            fwrite(text, 1, len, stdout);
            fputc('\n', stdout);
        }
    }
    free(result);
    fflush(stdout);
    cli_engine_report(engine);

out_vm:
    sgl_program_free(prog);
    sgl_vm_free(vm);
    cli_engine_stop(engine);
out:
    sgl_args_free(args);
    free(pairs);
    return rc;
}

/* ---- sgl compile -------------------------------------------------------- */

static const char compile_help[] =
    "usage: sgl compile FILE [-o OUT.sglc] [--disasm]\n"
    "\n"
    "Compiles FILE and every module it imports into one bytecode file\n"
    "(default: FILE with the extension .sglc). --disasm lists the bytecode on\n"
    "stdout instead (and writes the file only when -o is given). FILE may also\n"
    "be a .sglc file, to list it.\n";

int cmd_compile(int argc, char **argv)
{
    const char *file = NULL, *out_path = NULL;
    int disasm = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(compile_help, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--disasm")) {
            disasm = 1;
        } else if (!strcmp(argv[i], "-o")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sgl compile: -o needs a file name\n");
                return EXIT_USAGE;
            }
            out_path = argv[++i];
        } else if (argv[i][0] == '-') {
            return cli_unknown_option("compile", argv[i], compile_help);
        } else if (!file) {
            file = argv[i];
        } else {
            fprintf(stderr, "sgl compile: one file at a time\n");
            return EXIT_USAGE;
        }
    }
    if (!file) {
        fputs(compile_help, stderr);
        return EXIT_USAGE;
    }
    sgl_vm *vm = sgl_vm_new();
    sgl_program *prog = NULL;
    int rc = load_program(vm, file, &prog);
    if (rc == 0) {
        if (disasm)
            sgl_program_disasm(prog, stdout);
        char *def = NULL;
        if (!out_path && !disasm && !has_suffix(file, ".sglc")) {
            size_t n = strlen(file);
            def = malloc(n + 6);
            memcpy(def, file, n + 1);
            if (has_suffix(def, ".sgl"))
                def[n - 4] = 0;
            strcat(def, ".sglc");
            out_path = def;
        }
        if (out_path && sgl_program_save(vm, prog, out_path) != SGL_OK) {
            print_error(vm);
            rc = 1;
        }
        free(def);
    }
    sgl_program_free(prog);
    sgl_vm_free(vm);
    return rc;
}

/* ---- main --------------------------------------------------------------- */

/* `sgl help TOPIC`: a command's --help, or one of the topics below. */
static const char *const help_topics[] = {"gen", "exit", NULL};

static int help_topic(const char *topic)
{
    if (!strcmp(topic, "gen")) {
        /* the option table itself (runtime/gen_options.h) */
        printf("gen(name?, ...options) options (LANGUAGE.md section 6), with their OpenAI and SGLang names:\n\n");
        printf("  %-20s %-22s %s\n", "option", "OpenAI field", "SGLang sampling_params");
        for (int i = 0; i < RT_GEN_OPTION_COUNT; i++) {
            const RtGenOption *o = &rt_gen_options[i];
            if (!strcmp(o->name, "name")) continue;
            printf("  %-20s %-22s %s\n", o->name, o->openai ? o->openai : "-", o->sglang ? o->sglang : "-");
        }
        printf("\nAt most one of regex, json, grammar, choices and type per call.\n");
        return 0;
    }
    if (!strcmp(topic, "exit")) {
        printf("exit status: 0 ok; 1 a compile error (sgl check: rejected); 2 a runtime error (sgl check:\n"
               "invalid constraint); 64 bad usage. Errors are file:line:col: error: message.\n");
        return 0;
    }
    const Command *cmd = find_command(topic);
    if (cmd) {
        char *argv1[] = {(char *)"--help", NULL};
        return cmd->fn(1, argv1);
    }
    const char *guess = suggest_command(topic, help_topics, sizeof help_topics / sizeof help_topics[0] - 1);
    fprintf(stderr, "sgl help: no topic '%s'%s%s%s (topics: the commands, gen, exit)\n", topic,
            guess ? " (did you mean '" : "", guess ? guess : "", guess ? "'?)" : "");
    return EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "help")) return help_topic(argv[2]);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    if (!strcmp(argv[1], "-e")) {
        if (argc < 3) {
            fprintf(stderr, "sgl: -e needs the code to run\n");
            return EXIT_USAGE;
        }
        return run_main(argc - 3, argv + 3, argv[2]);
    }
    /* a script: `sgl FILE args...` (what #!/usr/bin/env sgl runs: the
     * kernel passes the script's path) is sgl run; no command's name has a
     * '/' or a .sgl/.sglc ending */
    if (argv[1][0] != '-' && (strchr(argv[1], '/') || has_suffix(argv[1], ".sgl") || has_suffix(argv[1], ".sglc")))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--version")) {
        printf("sgl %s\n", SGL_VERSION_STRING);
        return 0;
    }
    const Command *cmd = find_command(argv[1]);
    if (cmd) return cmd->fn(argc - 2, argv + 2);
    static const char *const help[] = {"help"};
    const char *guess = suggest_command(argv[1], help, 1);
    if (guess) {
        fprintf(stderr, "sgl: unknown command '%s' (did you mean '%s'?)\n", argv[1], guess);
        return EXIT_USAGE;
    }
    fprintf(stderr, "sgl: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
