/*
 * cli/check.c — `sgl check`: a constraint as a tool.
 *
 *   sgl check (--regex RE | --json-schema FILE | --grammar FILE | --ebnf FILE)
 *             [--any-whitespace] [--model M] [--segment canonical|random] [--seed S]
 *             [TEXT | --file F | --jsonl F]
 *
 * The text is tokenized with the model's tokenizer and fed through the
 * token masks one token at a time; then end-of-generation must be allowed.
 * Prints `accept` (exit 0) or `reject at BYTE` (exit 1); with --jsonl one
 * line per input (each line a JSON string), exit 0 when all were
 * accepted, 1 otherwise. An invalid or unsupported constraint: exit 2 with
 * the message. Bad usage: 64.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define EXIT_USAGE 64

static const char check_help[] =
    "usage: sgl check (--regex RE | --json-schema FILE | --grammar FILE | --ebnf FILE)\n"
    "                 [--any-whitespace] [--model M] [--segment canonical|random] [--seed S]\n"
    "                 [TEXT | --file F | --jsonl F]\n"
    "\n"
    "Tokenizes the text with the model's tokenizer, feeds it through the\n"
    "constraint's token masks one token at a time, then asks whether\n"
    "end-of-generation is allowed. Prints `accept` (exit 0) or `reject at BYTE`\n"
    "(the first refused token; exit 1). An invalid constraint or one that uses\n"
    "an unsupported feature: exit 2 with the message.\n"
    "  --grammar FILE     GBNF (LANGUAGE.md 9); --ebnf FILE: SGLang's EBNF\n"
    "  --any-whitespace   with --json-schema: any JSON whitespace between tokens\n"
    "                     (gen's any_whitespace); without it, none or one space\n"
    "                     where json.dumps writes one\n"
    "  --file F           the text is the file's contents\n"
    "  --jsonl F          every line of F is a JSON string: one result line each,\n"
    "                     exit 0 if all were accepted, 1 otherwise\n"
    "  --segment random   a random valid tokenization instead of the canonical one\n"
    "  --seed S           the random tokenization's seed (default 1)\n"
    "  --model PATH       whose tokenizer (default: the default model)\n";

static void report(int rc, size_t at)
{
    if (rc == 1) puts("accept");
    else printf("reject at %zu\n", at);
}

int cmd_check(int argc, char **argv)
{
    CliEngineOptions eo;
    cli_engine_options_init(&eo);
    int kind = -1, random_seg = 0;
    unsigned flags = 0;
    unsigned long long seed = 1;
    const char *cons = NULL, *text = NULL, *file = NULL, *jsonl = NULL;
    for (int i = 0; i < argc; i++) {
        int used = cli_engine_parse_option(&eo, argc, argv, &i);
        if (used < 0) return EXIT_USAGE;
        if (used) continue;
        const char *a = argv[i];
        int k = !strcmp(a, "--regex") ? SGL_CHECK_REGEX
              : !strcmp(a, "--json-schema") ? SGL_CHECK_JSON_SCHEMA
              : !strcmp(a, "--grammar") ? SGL_CHECK_GRAMMAR
              : !strcmp(a, "--ebnf") ? SGL_CHECK_EBNF : -1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(check_help, stdout);
            return 0;
        } else if (!strcmp(a, "--any-whitespace")) {
            flags |= SGL_CHECK_ANY_WHITESPACE;
        } else if (k >= 0 || !strcmp(a, "--file") || !strcmp(a, "--jsonl") || !strcmp(a, "--segment") ||
                   !strcmp(a, "--seed")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sgl check: %s needs a value\n", a);
                return EXIT_USAGE;
            }
            const char *v = argv[++i];
            if (k >= 0) {
                if (kind >= 0) {
                    fprintf(stderr, "sgl check: one constraint at a time\n");
                    return EXIT_USAGE;
                }
                kind = k;
                cons = v;
            } else if (!strcmp(a, "--file")) {
                file = v;
            } else if (!strcmp(a, "--jsonl")) {
                jsonl = v;
            } else if (!strcmp(a, "--segment")) {
                if (!strcmp(v, "random")) random_seg = 1;
                else if (!strcmp(v, "canonical")) random_seg = 0;
                else {
                    fprintf(stderr, "sgl check: --segment is canonical or random, not %s\n", v);
                    return EXIT_USAGE;
                }
            } else {
                char *end;
                seed = strtoull(v, &end, 10);
                if (!*v || *end) {
                    fprintf(stderr, "sgl check: --seed needs a number, not %s\n", v);
                    return EXIT_USAGE;
                }
            }
        } else if (a[0] == '-' && a[1] == '-') {
            return cli_unknown_option("check", a, check_help);
        } else if (!text) {
            text = a;
        } else {
            fprintf(stderr, "sgl check: one text at a time (quote it)\n");
            return EXIT_USAGE;
        }
    }
    if (kind < 0 || (!!text + !!file + !!jsonl) != 1) {
        fprintf(stderr, "sgl check: give one constraint and one of TEXT, --file, --jsonl\n\n%s", check_help);
        return EXIT_USAGE;
    }

    /* the constraint: the regex itself, or a file's contents */
    char *src = NULL;
    size_t src_len = 0;
    if (kind == SGL_CHECK_REGEX) {
        src = strdup(cons);
        src_len = src ? strlen(src) : 0;
    } else if (!(src = cli_read_file(cons, &src_len))) {
        fprintf(stderr, "sgl check: cannot read %s\n", cons);
        return 2;
    }
    char err[1024];
    sgl_runtime *rt = NULL;
    sgl_checker *ck = NULL;
    int status = 2;
    if (cli_runtime_open(&eo, 1, &rt, err, sizeof err) != 0) {
        fprintf(stderr, "sgl check: %s\n", err);
        goto out;
    }
    sgl_status st = sgl_checker_new_opts(rt, (sgl_check_kind)kind, src, src_len, flags, &ck, err, sizeof err);
    if (st != SGL_OK) {
        fprintf(stderr, "sgl check: %s\n", err);
        goto out;
    }
    size_t at = 0;
    if (!jsonl) {
        size_t tlen = 0;
        char *owned = NULL;
        if (file && !(owned = cli_read_file(file, &tlen))) {
            fprintf(stderr, "sgl check: cannot read %s\n", file);
            goto out;
        }
        const char *t = owned ? owned : text;
        if (!owned) tlen = strlen(text);
        int rc = sgl_checker_run(ck, t, tlen, random_seg, seed, &at, err, sizeof err);
        free(owned);
        if (rc < 0) {
            fprintf(stderr, "sgl check: %s\n", err);
            goto out;
        }
        report(rc, at);
        status = rc == 1 ? 0 : 1;
        goto out;
    }
    FILE *f = fopen(jsonl, "rb");
    if (!f) {
        fprintf(stderr, "sgl check: cannot read %s\n", jsonl);
        goto out;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0, all = 1;
    status = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *s;
        size_t slen;
        if (sgl_json_string(line, (size_t)n, &s, &slen, err, sizeof err) != 0) {
            fprintf(stderr, "sgl check: %s:%d: %s\n", jsonl, lineno, err);
            status = 2;
            break;
        }
        int rc = sgl_checker_run(ck, s, slen, random_seg, seed + (unsigned long long)lineno, &at, err, sizeof err);
        free(s);
        if (rc < 0) {
            fprintf(stderr, "sgl check: %s:%d: %s\n", jsonl, lineno, err);
            status = 2;
            break;
        }
        report(rc, at);
        if (rc != 1) all = 0;
    }
    free(line);
    fclose(f);
    if (status == 0) status = all ? 0 : 1;
out:
    sgl_checker_free(ck);
    if (rt) sgl_runtime_close(rt);
    free(src);
    return status;
}
