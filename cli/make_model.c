/*
 * cli/make_model.c — `sgl make-model`: a random-weight Hugging Face
 * checkpoint of a real architecture (include/sgl.h sgl_make_model).
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define EXIT_USAGE 64

static const char make_model_help[] =
    "usage: sgl make-model --arch ARCH --out DIR [--seed S] [--layers N] [--gguf TYPE]\n"
    "\n"
    "Writes a random-weight Hugging Face checkpoint (config.json, bf16\n"
    "model.safetensors, a byte-level BPE tokenizer.json) of a real\n"
    "architecture, the same bytes for the same seed on any machine.\n"
    "\n"
    "  --arch ARCH   llama-3-8b, llama-3-70b (140 GB), llama-3.2-1b or qwen2.5-7b\n"
    "  --out DIR     the directory to write (created)\n"
    "  --seed S      weights and merges seed (default 0)\n"
    "  --layers N    keep N decoder layers (default: the architecture's)\n"
    "  --gguf TYPE   also write DIR/model-TYPE.gguf, the same model in llama.cpp's\n"
    "                GGUF layout with matrices in TYPE: f32, f16, bf16, q8_0,\n"
    "                q4_0 or q4_1\n";

int cmd_make_model(int argc, char **argv)
{
    const char *arch = NULL, *out = NULL, *gguf = NULL;
    unsigned long long seed = 0;
    int layers = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(make_model_help, stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sgl make-model: %s needs a value (see --help)\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        char *end;
        if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--gguf")) gguf = v;
        else if (!strcmp(a, "--seed")) {
            seed = strtoull(v, &end, 10);
            if (!*v || *end) {
                fprintf(stderr, "sgl make-model: --seed needs an integer, not '%s'\n", v);
                return EXIT_USAGE;
            }
        } else if (!strcmp(a, "--layers")) {
            long n = strtol(v, &end, 10);
            if (!*v || *end || n < 1 || n > INT_MAX) {
                fprintf(stderr, "sgl make-model: --layers needs a positive integer, not '%s'\n", v);
                return EXIT_USAGE;
            }
            layers = (int)n;
        } else {
            return cli_unknown_option("make-model", a, make_model_help);
        }
    }
    if (!arch || !out) {
        fputs(make_model_help, stderr);
        return EXIT_USAGE;
    }
    char err[1024];
    sgl_status st = sgl_make_model(arch, out, seed, layers, err, sizeof err);
    if (st == SGL_OK && gguf) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model-%s.gguf", out, gguf);
        st = sgl_make_gguf(out, gguf, path, err, sizeof err);
    }
    if (st != SGL_OK) {
        fprintf(stderr, "sgl make-model: %s\n", err);
        return st == SGL_ERR_USAGE ? EXIT_USAGE : 1;
    }
    return 0;
}
