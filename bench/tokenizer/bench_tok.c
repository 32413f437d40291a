/*
 * bench/tokenizer/bench_tok.c — tok_encode throughput in MB/s.
 *
 * Builds a deterministic ~4 MB mixed text (English-like prose whose words
 * follow Zipf's law, code, numbers, Chinese, emoji, whitespace runs, chat
 * markup), cuts it into documents of about 2 KB at line ends (prompt-sized
 * calls) and encodes them all with each tokenizer it can load:
 *
 *   the default GGUF (models/SmolLM2-135M-Instruct.Q4_1.gguf, byte-level BPE)
 *   tests/data/tok/bytelevel, qwen2 (HF tokenizer.json, byte-level BPE)
 *   tests/data/tok/spm_legacy (HF, SentencePiece-style with byte fallback)
 *   llama.cpp's test vocabularies in $SGL_TOK_VOCAB_DIR (llama-spm, llama-bpe)
 *
 * "cold" is the first pass (empty word cache), "warm" the best of three
 * later passes. Usage: bench_tok [MB [NAME-SUBSTRING]]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/gguf.h"
#include "runtime/tokenizer.h"

typedef struct {
    char *p;
    size_t n, cap;
} Text;

static void put(Text *t, const char *s, size_t n)
{
    if (t->n + n + 1 > t->cap) {
        t->cap = (t->n + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
        if (!t->p) {
            perror("realloc");
            exit(1);
        }
    }
    memcpy(t->p + t->n, s, n);
    t->n += n;
    t->p[t->n] = 0;
}

static void puts_(Text *t, const char *s) { put(t, s, strlen(s)); }

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* A lexicon of pseudo-words drawn with Zipf's law (s = 1.07), as words are
 * in real text: a few very frequent, a long tail of rare ones. */
#define LEXICON 20000
static char lexicon[LEXICON][40];
static double zipf_cdf[LEXICON];

static void make_lexicon(void)
{
    static const char *syl[] = { "ta", "re", "mon", "ex", "pli", "cat", "ion", "st", "ar", "de", "vel", "op",
                                 "ment", "qu", "ick", "bro", "wn", "fox", "ju", "mp", "ov", "er", "la", "zy",
                                 "in", "ter", "na", "tio", "nal", "ly", "ing", "ed", "s", "un", "be", "com" };
    double sum = 0;
    for (int w = 0; w < LEXICON; w++) {
        int n = 1 + (int)rnd(4);
        lexicon[w][0] = 0;
        for (int i = 0; i < n; i++)
            strcat(lexicon[w], syl[rnd(sizeof syl / sizeof syl[0])]);
        sum += 1.0 / pow(w + 1, 1.07);
        zipf_cdf[w] = sum;
    }
    for (int w = 0; w < LEXICON; w++)
        zipf_cdf[w] /= sum;
}

static void word(Text *t, int cap)
{
    double u = (double)rnd(1u << 30) / (double)(1u << 30);
    int lo = 0, hi = LEXICON - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    char buf[40];
    strcpy(buf, lexicon[lo]);
    if (cap)
        buf[0] = (char)(buf[0] - 32);
    puts_(t, buf);
}

static void make_text(Text *t, size_t bytes)
{
    static const char *code[] = {
        "def handle_request(self, request):\n    if request.method == \"POST\":\n        return self.post(request)\n",
        "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\n",
        "{\"id\": 1234, \"name\": \"example\", \"values\": [1.5, 2.25, -3], \"ok\": true}\n",
        "    return fmt.Errorf(\"open %s: %w\", path, err)\n",
        "SELECT name, COUNT(*) FROM users WHERE age >= 21 GROUP BY name;\n",
    };
    static const char *cjk[] = { "\xe4\xbd\xa0\xe5\xa5\xbd", "\xe4\xb8\x96\xe7\x95\x8c", "\xe4\xbb\x8a\xe5\xa4\xa9",
                                 "\xe5\xa4\xa9\xe6\xb0\x94", "\xe5\xbe\x88\xe5\xa5\xbd", "\xe6\x88\x91\xe4\xbb\xac",
                                 "\xe3\x80\x82", "\xef\xbc\x8c" };
    static const char *emoji[] = { "\xf0\x9f\x98\x80", "\xf0\x9f\x91\x8d", "\xf0\x9f\x94\xa5", "\xe2\x9c\x85",
                                   "\xf0\x9f\x9a\x80" };
    while (t->n < bytes) {
        uint32_t k = rnd(100);
        if (k < 60) { /* a sentence */
            int n = 6 + (int)rnd(14);
            for (int i = 0; i < n; i++) {
                if (i)
                    puts_(t, rnd(40) ? " " : "  ");
                if (rnd(12) == 0) {
                    char num[32];
                    snprintf(num, sizeof num, "%u", rnd(100000));
                    puts_(t, num);
                } else
                    word(t, i == 0 || rnd(15) == 0);
                if (rnd(10) == 0)
                    puts_(t, ",");
                if (rnd(30) == 0)
                    puts_(t, "'s");
            }
            puts_(t, rnd(5) ? ". " : ".\n");
        } else if (k < 75)
            puts_(t, code[rnd(sizeof code / sizeof code[0])]);
        else if (k < 85) {
            int n = 2 + (int)rnd(10);
            for (int i = 0; i < n; i++)
                puts_(t, cjk[rnd(sizeof cjk / sizeof cjk[0])]);
            puts_(t, "\n");
        } else if (k < 88)
            puts_(t, emoji[rnd(sizeof emoji / sizeof emoji[0])]);
        else if (k < 93)
            puts_(t, rnd(2) ? "\n\n" : "        ");
        else
            puts_(t, "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n");
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Encodes the documents; returns seconds, *ntok tokens. */
static double pass(Tokenizer *tok, const Text *t, const size_t *cuts, size_t ncuts, size_t *ntok)
{
    TokIds v = { 0 };
    double t0 = now();
    size_t start = 0, total = 0;
    for (size_t i = 0; i < ncuts; i++) {
        v.n = 0;
        if (tok_encode(tok, t->p + start, cuts[i] - start, TOK_ENC_PARSE_SPECIAL, &v)) {
            fprintf(stderr, "encode failed: %s\n", tok_last_error(tok));
            exit(1);
        }
        total += v.n;
        start = cuts[i];
    }
    double dt = now() - t0;
    tok_ids_free(&v);
    *ntok = total;
    return dt;
}

static const char *only; /* run only tokenizers whose label contains this */

static void bench(const char *name, Tokenizer *tok, const Text *t, const size_t *cuts, size_t ncuts)
{
    size_t ntok;
    double cold = pass(tok, t, cuts, ncuts, &ntok);
    double warm = 1e30;
    for (int r = 0; r < 3; r++) {
        double d = pass(tok, t, cuts, ncuts, &ntok);
        if (d < warm)
            warm = d;
    }
    double mb = (double)t->n / 1e6;
    printf("%-28s %-12s %8.1f MB/s cold %8.1f MB/s warm %6.2f M tok/s %5.2f bytes/token\n", name,
           tok_model_kind(tok), mb / cold, mb / warm, (double)ntok / warm / 1e6, (double)t->n / (double)ntok);
}

static void try_gguf(const char *label, const char *path, const Text *t, const size_t *cuts, size_t ncuts)
{
    if (only && !strstr(label, only))
        return;
    if (access(path, R_OK) != 0) {
        printf("%-28s skipped (%s absent)\n", label, path);
        return;
    }
    char err[256] = "";
    GgufFile *f = gguf_open(path, err, sizeof err);
    Tokenizer *tok = NULL;
    if (!f || tok_load_gguf(f, &tok, err, sizeof err)) {
        printf("%-28s failed: %s\n", label, err);
        gguf_close(f);
        return;
    }
    gguf_close(f);
    bench(label, tok, t, cuts, ncuts);
    tok_free(tok);
}

static void try_hf(const char *label, const char *dir, const Text *t, const size_t *cuts, size_t ncuts)
{
    if (only && !strstr(label, only))
        return;
    char err[256] = "";
    Tokenizer *tok = NULL;
    if (tok_load_hf(dir, &tok, err, sizeof err)) {
        printf("%-28s failed: %s\n", label, err);
        return;
    }
    bench(label, tok, t, cuts, ncuts);
    tok_free(tok);
}

int main(int argc, char **argv)
{
    double mb = argc > 1 ? atof(argv[1]) : 4.0;
    only = argc > 2 ? argv[2] : NULL;
    Text t = { 0 };
    make_lexicon();
    make_text(&t, (size_t)(mb * 1e6));
    size_t *cuts = malloc((t.n / 1000 + 2) * sizeof *cuts), ncuts = 0;
    for (size_t pos = 0; pos < t.n;) {
        size_t end = pos + 2048 < t.n ? pos + 2048 : t.n;
        while (end < t.n && t.p[end - 1] != '\n')
            end++;
        cuts[ncuts++] = end;
        pos = end;
    }
    printf("text: %.2f MB in %zu documents\n", (double)t.n / 1e6, ncuts);
    const char *vd = getenv("SGL_TOK_VOCAB_DIR");
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/ggml-vocab-llama-bpe.gguf", vd ? vd : "build/vocab");
    snprintf(p2, sizeof p2, "%s/ggml-vocab-llama-spm.gguf", vd ? vd : "build/vocab");
    try_gguf("gguf SmolLM2 (default)", "models/SmolLM2-135M-Instruct.Q4_1.gguf", &t, cuts, ncuts);
    try_gguf("gguf llama-bpe (Llama 3)", p1, &t, cuts, ncuts);
    try_gguf("gguf llama-spm (Llama 2)", p2, &t, cuts, ncuts);
    try_hf("hf bytelevel", "tests/data/tok/bytelevel", &t, cuts, ncuts);
    try_hf("hf qwen2 (NFC + Split)", "tests/data/tok/qwen2", &t, cuts, ncuts);
    try_hf("hf spm_legacy", "tests/data/tok/spm_legacy", &t, cuts, ncuts);
    free(cuts);
    free(t.p);
    return 0;
}
