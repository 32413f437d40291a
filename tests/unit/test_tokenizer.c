/*
 * tests/unit/test_tokenizer.c — tokenizer and streaming detokenizer.
 *
 * Reference ids (tests/data/tok/NAME.ids.json) were recorded by
 * tests/tools/make_tok_refs.py: Hugging Face `tokenizers` for the
 * tokenizer.json directories beside them, llama.cpp (llama-cpp-python) for
 * the default GGUF and for llama.cpp's test vocabularies. Every case must
 * agree token for token. Tests that need models/ or the vocabularies skip
 * with a message when those are absent.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/detok.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"

#define DATA "tests/data/tok/"
#define MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* ---- helpers ---------------------------------------------------------------- */

static Tokenizer *load_hf_dir(const char *name)
{
    char dir[256], err[256] = "";
    snprintf(dir, sizeof dir, DATA "%s", name);
    Tokenizer *t = NULL;
    int rc = tok_load_hf(dir, &t, err, sizeof err);
    cr_assert_eq(rc, 0, "tok_load_hf(%s): %s", dir, err);
    return t;
}

static void print_escaped(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n && i < 160; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
    fputs(n > 160 ? "...\"" : "\"", f);
}

static void print_ids(FILE *f, const char *label, const int32_t *ids, size_t n)
{
    fprintf(f, "  %s:", label);
    for (size_t i = 0; i < n && i < 40; i++)
        fprintf(f, " %d", ids[i]);
    fputs(n > 40 ? " ...\n" : "\n", f);
}

static bool same_ids(const json_t *want, const TokIds *got)
{
    if (json_array_size(want) != got->n)
        return false;
    for (size_t i = 0; i < got->n; i++)
        if (json_integer_value(json_array_get(want, i)) != got->ids[i])
            return false;
    return true;
}

typedef struct {
    int cases, checks, mismatches;
} Score;

static void report(Score *sc, const char *what, const json_t *text, const json_t *want, const TokIds *got)
{
    sc->mismatches++;
    if (sc->mismatches > 6)
        return;
    fprintf(stderr, "MISMATCH %s for ", what);
    print_escaped(stderr, json_string_value(text), json_string_length(text));
    fputc('\n', stderr);
    size_t n = json_array_size(want);
    int32_t *w = malloc((n + 1) * sizeof *w);
    for (size_t i = 0; i < n; i++)
        w[i] = (int32_t)json_integer_value(json_array_get(want, i));
    print_ids(stderr, "want", w, n);
    print_ids(stderr, "got ", got->ids, got->n);
    free(w);
}

/* Encodes every case of a reference file and compares. decode: also check
 * tok_decode against the recorded (or original) text. */
static Score check_refs(Tokenizer *t, const char *refs, bool decode)
{
    json_error_t je;
    json_t *root = json_load_file(refs, JSON_ALLOW_NUL, &je);
    cr_assert_not_null(root, "%s: %s", refs, je.text);
    const json_t *cases = json_object_get(root, "cases");
    cr_assert(json_array_size(cases) > 100, "%s: too few cases", refs);
    Score sc = { 0 };
    TokIds got = { 0 };
    size_t i;
    const json_t *c;
    json_array_foreach(cases, i, c)
    {
        const json_t *text = json_object_get(c, "text");
        const char *s = json_string_value(text);
        size_t n = json_string_length(text);
        sc.cases++;
        struct {
            const char *key, *fallback;
            unsigned flags;
        } runs[] = {
            { "ids", NULL, TOK_ENC_PARSE_SPECIAL },
            { "noparse", "ids", 0 },
            { "add", NULL, TOK_ENC_PARSE_SPECIAL | TOK_ENC_ADD_SPECIAL },
        };
        for (int r = 0; r < 3; r++) {
            const json_t *want = json_object_get(c, runs[r].key);
            if (!want && runs[r].fallback)
                want = json_object_get(c, runs[r].fallback);
            if (!want)
                continue;
            got.n = 0;
            int rc = tok_encode(t, s, n, runs[r].flags, &got);
            cr_assert_eq(rc, 0, "tok_encode: %s", tok_last_error(t));
            sc.checks++;
            if (!same_ids(want, &got))
                report(&sc, runs[r].key, text, want, &got);
        }
        if (decode) {
            const json_t *ids = json_object_get(c, "ids");
            const json_t *want = json_object_get(c, "decode");
            if (!want)
                want = text;
            size_t m = json_array_size(ids);
            int32_t *v = malloc((m + 1) * sizeof *v);
            for (size_t k = 0; k < m; k++)
                v[k] = (int32_t)json_integer_value(json_array_get(ids, k));
            char *out = NULL;
            size_t ol = 0;
            unsigned fl = TOK_DEC_SKIP_SPECIAL | (tok_decode_strips_space(t) ? TOK_DEC_STRIP_LEADING_SPACE : 0);
            cr_assert_eq(tok_decode(t, v, m, fl, &out, &ol), 0);
            /* HF decodes invalid UTF-8 lossily; compare only valid results */
            sc.checks++;
            if (ol != json_string_length(want) || memcmp(out, json_string_value(want), ol) != 0) {
                if (!strstr(json_string_value(want), "\xEF\xBF\xBD")) {
                    sc.mismatches++;
                    if (sc.mismatches <= 6) {
                        fprintf(stderr, "DECODE MISMATCH: want ");
                        print_escaped(stderr, json_string_value(want), json_string_length(want));
                        fprintf(stderr, "\n  got ");
                        print_escaped(stderr, out, ol);
                        fputc('\n', stderr);
                    }
                }
            }
            free(out);
            free(v);
        }
    }
    tok_ids_free(&got);
    json_decref(root);
    fprintf(stderr, "%s: %d strings, %d comparisons, %d mismatches\n", refs, sc.cases, sc.checks, sc.mismatches);
    return sc;
}

static GgufFile *open_or_skip(const char *path)
{
    if (access(path, R_OK) != 0)
        cr_skip_test("%s absent (make model / make_tok_refs.py fetch-vocab): skipped", path);
    char err[256] = "";
    GgufFile *f = gguf_open(path, err, sizeof err);
    cr_assert_not_null(f, "gguf_open: %s", err);
    return f;
}

static Tokenizer *load_gguf_path(const char *path, GgufFile **fout)
{
    GgufFile *f = open_or_skip(path);
    Tokenizer *t = NULL;
    char err[256] = "";
    int rc = tok_load_gguf(f, &t, err, sizeof err);
    cr_assert_eq(rc, 0, "tok_load_gguf(%s): %s", path, err);
    *fout = f;
    return t;
}

/* ---- agreement with Hugging Face tokenizers ---------------------------------- */

Test(tok_hf, bytelevel_smollm2_layout)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    cr_assert_str_eq(tok_model_kind(t), "bpe");
    Score sc = check_refs(t, DATA "bytelevel.ids.json", true);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    tok_free(t);
}

Test(tok_hf, llama3_split_regex_ignore_merges)
{
    Tokenizer *t = load_hf_dir("llama3");
    cr_assert(tok_add_bos(t));
    Score sc = check_refs(t, DATA "llama3.ids.json", true);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    tok_free(t);
}

Test(tok_hf, qwen2_split_regex_nfc)
{
    Tokenizer *t = load_hf_dir("qwen2");
    Score sc = check_refs(t, DATA "qwen2.ids.json", true);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    tok_free(t);
}

Test(tok_hf, sentencepiece_legacy_byte_fallback)
{
    Tokenizer *t = load_hf_dir("spm_legacy");
    cr_assert_str_eq(tok_model_kind(t), "bpe-fallback");
    cr_assert(tok_add_bos(t));
    cr_assert(tok_decode_strips_space(t));
    Score sc = check_refs(t, DATA "spm_legacy.ids.json", true);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    tok_free(t);
}

Test(tok_hf, sentencepiece_metaspace_first)
{
    Tokenizer *t = load_hf_dir("spm_meta");
    Score sc = check_refs(t, DATA "spm_meta.ids.json", true);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    tok_free(t);
}

/* A base directory's tokenizer.json with the top-level keys of the refs
 * file's "patch" replaced, written to a temporary file and loaded. */
static Tokenizer *load_patched(const char *refs)
{
    json_error_t je;
    json_t *r = json_load_file(refs, 0, &je);
    cr_assert_not_null(r, "%s: %s", refs, je.text);
    char base[256];
    snprintf(base, sizeof base, DATA "%s/tokenizer.json", json_string_value(json_object_get(r, "tokenizer")));
    json_t *root = json_load_file(base, JSON_ALLOW_NUL, &je);
    cr_assert_not_null(root, "%s: %s", base, je.text);
    cr_assert_eq(json_object_update(root, json_object_get(r, "patch")), 0);
    char dir[] = "/tmp/sgl_tok_XXXXXX", path[64], err[256] = "";
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(json_dump_file(root, path, JSON_COMPACT), 0);
    Tokenizer *t = NULL;
    int rc = tok_load_hf_files(path, NULL, &t, err, sizeof err);
    cr_assert_eq(rc, 0, "%s", err);
    unlink(path);
    rmdir(dir);
    json_decref(root);
    json_decref(r);
    return t;
}

static void check_variant(const char *name)
{
    char refs[128];
    snprintf(refs, sizeof refs, DATA "%s.ids.json", name);
    Tokenizer *t = load_patched(refs);
    Score sc = check_refs(t, refs, false);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    tok_free(t);
}

Test(tok_hf, bytelevel_add_prefix_space) { check_variant("bytelevel_prefix"); }
Test(tok_hf, split_behaviors_and_invert) { check_variant("bytelevel_splits"); }
Test(tok_hf, metaspace_split_always) { check_variant("spm_meta_split"); }
Test(tok_hf, added_tokens_strip_single_word_nonspecial) { check_variant("bytelevel_added"); }

/* ---- agreement with llama.cpp ---------------------------------------------- */

Test(tok_gguf, smollm2_default_model)
{
    GgufFile *f;
    Tokenizer *t = load_gguf_path(MODEL, &f);
    cr_assert_str_eq(tok_model_kind(t), "bpe");
    cr_assert_eq(tok_vocab_size(t), 49152);
    Score sc = check_refs(t, DATA "smollm2_gguf.ids.json", false);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    /* metadata */
    cr_assert_eq(tok_bos(t), 1);
    cr_assert_eq(tok_eos(t), 2);
    cr_assert_eq(tok_eot(t), 2);
    cr_assert(!tok_add_bos(t));
    cr_assert(tok_is_eog(t, 2));
    cr_assert(tok_is_eog(t, 0)); /* <|endoftext|> */
    cr_assert(!tok_is_eog(t, 1));
    cr_assert_not_null(tok_chat_template(t));
    cr_assert(strstr(tok_chat_template(t), "<|im_start|>") != NULL);
    cr_assert_eq(tok_find(t, "<|im_start|>", 12), 1);
    cr_assert(tok_is_special(t, 1));
    tok_free(t);
    gguf_close(f);
}

static void check_vocab(const char *name)
{
    const char *dir = getenv("SGL_TOK_VOCAB_DIR");
    char path[512], refs[256];
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir ? dir : "build/vocab", name);
    snprintf(refs, sizeof refs, DATA "vocab_%s.ids.json", name);
    GgufFile *f;
    Tokenizer *t = load_gguf_path(path, &f);
    Score sc = check_refs(t, refs, false);
    cr_assert_eq(sc.mismatches, 0, "%d mismatches", sc.mismatches);
    tok_free(t);
    gguf_close(f);
}

Test(tok_gguf, vocab_llama_spm) { check_vocab("llama-spm"); }
Test(tok_gguf, vocab_llama_bpe) { check_vocab("llama-bpe"); }
Test(tok_gguf, vocab_qwen2) { check_vocab("qwen2"); }
Test(tok_gguf, vocab_gpt2) { check_vocab("gpt-2"); }

/* ---- behaviour ----------------------------------------------------------------- */

Test(tok, byte_level_map_is_a_bijection)
{
    int seen[512] = { 0 };
    extern uint32_t tok_byte_to_cp(uint8_t b);
    extern int tok_cp_to_byte(uint32_t cp);
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        cr_assert(cp < 512);
        cr_assert_eq(seen[cp]++, 0);
        cr_assert_eq(tok_cp_to_byte(cp), b);
    }
    cr_assert_eq(tok_byte_to_cp(' '), 0x120);  /* "Ġ" */
    cr_assert_eq(tok_byte_to_cp('\n'), 0x10A); /* "Ċ" */
}

Test(tok, parse_special_flag)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    TokIds v = { 0 };
    const char *s = "<|im_start|>user";
    cr_assert_eq(tok_encode(t, s, strlen(s), TOK_ENC_PARSE_SPECIAL, &v), 0);
    cr_assert_eq(v.ids[0], tok_find(t, "<|im_start|>", 12));
    size_t with = v.n;
    v.n = 0;
    cr_assert_eq(tok_encode(t, s, strlen(s), 0, &v), 0);
    cr_assert_gt(v.n, with);
    for (size_t i = 0; i < v.n; i++)
        cr_assert(!tok_is_special(t, v.ids[i]));
    /* both decode back to the text */
    char *out;
    size_t n;
    cr_assert_eq(tok_decode(t, v.ids, v.n, 0, &out, &n), 0);
    cr_assert_str_eq(out, s);
    free(out);
    tok_ids_free(&v);
    tok_free(t);
}

Test(tok, special_ids_and_template_from_config)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    cr_assert_eq(tok_bos(t), tok_find(t, "<|im_start|>", 12));
    cr_assert_eq(tok_eos(t), tok_find(t, "<|im_end|>", 10));
    cr_assert_eq(tok_eot(t), tok_eos(t));
    cr_assert(tok_is_eog(t, tok_find(t, "<|endoftext|>", 13)));
    cr_assert_not_null(tok_chat_template(t));
    cr_assert_eq(tok_find(t, "no such token", 13), -1);
    int n;
    const int32_t *e = tok_eog_ids(t, &n);
    cr_assert(n >= 2 && e != NULL);
    tok_free(t);
}

Test(tok, arbitrary_bytes_round_trip)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    TokIds v = { 0 };
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        char buf[64];
        size_t n = (size_t)(round % 63) + 1;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (char)(seed >> 16);
        }
        v.n = 0;
        cr_assert_eq(tok_encode(t, buf, n, 0, &v), 0);
        char *out;
        size_t ol;
        cr_assert_eq(tok_decode(t, v.ids, v.n, 0, &out, &ol), 0);
        cr_assert_eq(ol, n);
        cr_assert_eq(memcmp(out, buf, n), 0);
        free(out);
    }
    tok_ids_free(&v);
    tok_free(t);
}

Test(tok, long_whitespace_and_long_word)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    size_t n = 200000;
    char *s = malloc(n + 2);
    memset(s, ' ', n);
    s[n] = 'x';
    TokIds v = { 0 };
    cr_assert_eq(tok_encode(t, s, n + 1, 0, &v), 0, "%s", tok_last_error(t));
    char *out;
    size_t ol;
    cr_assert_eq(tok_decode(t, v.ids, v.n, 0, &out, &ol), 0);
    cr_assert_eq(ol, n + 1);
    free(out);
    memset(s, 'q', n);
    v.n = 0;
    cr_assert_eq(tok_encode(t, s, n, 0, &v), 0);
    cr_assert_gt(v.n, 0);
    free(s);
    tok_ids_free(&v);
    tok_free(t);
}

Test(tok, encode_appends_and_empty_input)
{
    Tokenizer *t = load_hf_dir("spm_legacy");
    TokIds v = { 0 };
    cr_assert_eq(tok_encode(t, "", 0, 0, &v), 0);
    cr_assert_eq(v.n, 0);
    cr_assert_eq(tok_encode(t, "", 0, TOK_ENC_ADD_SPECIAL, &v), 0);
    cr_assert_eq(v.n, 1);
    cr_assert_eq(v.ids[0], tok_bos(t));
    cr_assert_eq(tok_encode(t, "hi", 2, 0, &v), 0);
    cr_assert_gt(v.n, 1);
    cr_assert_eq(v.ids[0], tok_bos(t));
    tok_ids_free(&v);
    tok_free(t);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

Test(tok, unsupported_configurations_fail_clearly)
{
    char dir[] = "/tmp/sgl_tok_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    Tokenizer *t = NULL;

    write_file(path, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
    cr_assert_eq(tok_load_hf(dir, &t, err, sizeof err), ERR_UNSUPPORTED);
    cr_assert(strstr(err, "Unigram") != NULL, "%s", err);
    cr_assert_null(t);

    write_file(path, "{\"normalizer\": {\"type\": \"NFKC\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                     "\"merges\": []}}");
    cr_assert_eq(tok_load_hf(dir, &t, err, sizeof err), ERR_UNSUPPORTED);
    cr_assert(strstr(err, "NFKC") != NULL, "%s", err);

    write_file(path, "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
                     "\"Isolated\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
    cr_assert_eq(tok_load_hf(dir, &t, err, sizeof err), ERR_UNSUPPORTED);
    cr_assert(strstr(err, "regex") != NULL, "%s", err);

    write_file(path, "{\"model\": ");
    cr_assert_eq(tok_load_hf(dir, &t, err, sizeof err), ERR_FORMAT);

    unlink(path);
    rmdir(dir);
    cr_assert_eq(tok_load_hf(dir, &t, err, sizeof err), ERR_IO);
    cr_assert(strstr(err, "tokenizer.json") != NULL);
}

Test(tok, minimal_bpe_from_json)
{
    char dir[] = "/tmp/sgl_tok_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[128], err[256] = "";
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    /* a, b, ab, abab, <x>: merges a+b then ab+ab; <x> a special added token */
    write_file(path, "{\"added_tokens\": [{\"id\": 5, \"content\": \"<x>\", \"special\": true}],"
                     "\"model\": {\"type\": \"BPE\", \"unk_token\": \"?\", \"vocab\": {\"?\": 0, \"a\": 1, \"b\": 2, "
                     "\"ab\": 3, \"abab\": 4}, \"merges\": [\"a b\", [\"ab\", \"ab\"]]}}");
    Tokenizer *t = NULL;
    cr_assert_eq(tok_load_hf(dir, &t, err, sizeof err), 0, "%s", err);
    TokIds v = { 0 };
    cr_assert_eq(tok_encode(t, "ababab<x>ba", 11, TOK_ENC_PARSE_SPECIAL, &v), 0);
    int32_t want[] = { 4, 3, 5, 2, 1 };
    cr_assert_eq(v.n, 5);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(v.ids[i], want[i], "at %d", i);
    v.n = 0;
    cr_assert_eq(tok_encode(t, "c", 1, 0, &v), 0);
    cr_assert_eq(v.n, 1);
    cr_assert_eq(v.ids[0], 0); /* unknown character */
    tok_ids_free(&v);
    tok_free(t);
    unlink(path);
    rmdir(dir);
}

/* ---- streaming detokenizer ------------------------------------------------------- */

/* Feeds ids one by one; returns the concatenated deltas (malloc'd). */
static char *stream(Detok *d, const int32_t *ids, size_t n, int *last_rc, bool flush)
{
    size_t cap = 256, len = 0;
    char *acc = malloc(cap);
    int rc = DETOK_MORE;
    for (size_t i = 0; i <= n; i++) {
        const char *s;
        size_t l;
        if (i < n)
            rc = detok_feed(d, ids[i], &s, &l);
        else if (flush)
            rc = detok_flush(d, &s, &l);
        else
            break;
        cr_assert_geq(rc, 0);
        /* never half a character: every delta is valid UTF-8 on its own */
        for (size_t k = 0; k < l;) {
            unsigned char c = (unsigned char)s[k];
            size_t m = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
            cr_assert(c < 0x80 || c >= 0xC2, "bad lead byte in delta");
            cr_assert_leq(k + m, l, "delta ends inside a character");
            k += m;
        }
        while (len + l + 1 > cap)
            cap *= 2;
        acc = realloc(acc, cap);
        memcpy(acc + len, s, l);
        len += l;
    }
    acc[len] = 0;
    *last_rc = rc;
    return acc;
}

static TokIds encode_str(Tokenizer *t, const char *s)
{
    TokIds v = { 0 };
    cr_assert_eq(tok_encode(t, s, strlen(s), TOK_ENC_PARSE_SPECIAL, &v), 0);
    return v;
}

Test(detok, utf8_split_over_byte_tokens)
{
    Tokenizer *t = load_hf_dir("spm_legacy");
    const char *s = "ok \xF0\x9F\xA6\x84 \xE4\xB8\x80\xE4\xBA\x8C then";
    TokIds v = encode_str(t, s);
    int byte_tokens = 0;
    for (size_t i = 0; i < v.n; i++)
        byte_tokens += (tok_token_attr(t, v.ids[i]) & TOK_ATTR_BYTE) != 0;
    cr_assert_geq(byte_tokens, 4, "the unicorn should need byte fallback");
    Detok *d;
    cr_assert_eq(detok_new(t, NULL, 0, DETOK_STRIP_LEADING_SPACE, &d), 0);
    int rc;
    char *got = stream(d, v.ids, v.n, &rc, true);
    cr_assert_str_eq(got, s);
    cr_assert_eq(rc, DETOK_MORE);
    size_t tl;
    cr_assert_str_eq(detok_text(d, &tl), s);
    free(got);
    detok_free(d);
    tok_ids_free(&v);
    tok_free(t);
}

Test(detok, leading_space_kept_without_flag)
{
    Tokenizer *t = load_hf_dir("spm_legacy");
    TokIds v = encode_str(t, "Hello");
    Detok *d;
    cr_assert_eq(detok_new(t, NULL, 0, 0, &d), 0);
    int rc;
    char *got = stream(d, v.ids, v.n, &rc, true);
    cr_assert_str_eq(got, " Hello");
    free(got);
    detok_free(d);
    tok_ids_free(&v);
    tok_free(t);
}

Test(detok, incomplete_and_invalid_bytes)
{
    Tokenizer *t = load_hf_dir("spm_legacy");
    int32_t e4 = tok_find(t, "<0xE4>", 6), ff = tok_find(t, "<0xFF>", 6), b8 = tok_find(t, "<0xB8>", 6);
    int32_t a = tok_find(t, "a", 1);
    cr_assert(e4 >= 0 && ff >= 0 && b8 >= 0 && a >= 0);
    Detok *d;
    cr_assert_eq(detok_new(t, NULL, 0, 0, &d), 0);
    const char *s;
    size_t l;
    cr_assert_eq(detok_feed(d, e4, &s, &l), DETOK_MORE);
    cr_assert_eq(l, 0, "half a character must be held");
    cr_assert_eq(detok_pending(d), 1);
    cr_assert_eq(detok_feed(d, b8, &s, &l), DETOK_MORE);
    cr_assert_eq(l, 0);
    cr_assert_eq(detok_feed(d, a, &s, &l), DETOK_MORE); /* E4 B8 then 'a': invalid */
    cr_assert_eq(l, 4);
    cr_assert_eq(memcmp(s, "\xEF\xBF\xBD" "a", 4), 0);
    cr_assert_eq(detok_feed(d, ff, &s, &l), DETOK_MORE); /* never valid */
    cr_assert_eq(l, 3);
    cr_assert_eq(detok_feed(d, e4, &s, &l), DETOK_MORE);
    cr_assert_eq(l, 0);
    cr_assert_eq(detok_flush(d, &s, &l), DETOK_MORE);
    cr_assert_eq(l, 3);
    cr_assert_eq(memcmp(s, "\xEF\xBF\xBD", 3), 0);
    cr_assert_eq(detok_feed(d, tok_vocab_size(t), &s, &l), ERR_ARG);
    detok_free(d);
    tok_free(t);
}

Test(detok, stop_string_across_tokens)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    const char *text = "The answer is 42.\nUser: and then more text";
    TokIds v = encode_str(t, text);
    const char *stops[] = { "never", "\nUser:" };
    Detok *d;
    cr_assert_eq(detok_new(t, stops, 2, 0, &d), 0);
    int rc;
    char *got = stream(d, v.ids, v.n, &rc, false);
    cr_assert_eq(rc, DETOK_STOPPED);
    cr_assert_str_eq(got, "The answer is 42.");
    cr_assert_eq(detok_stop_index(d), 1);
    const char *s;
    size_t l;
    cr_assert_eq(detok_feed(d, v.ids[0], &s, &l), DETOK_STOPPED);
    cr_assert_eq(l, 0);
    free(got);
    /* the stop string split inside one token as well: "42." then ".\nU" */
    detok_reset(d);
    TokIds w = encode_str(t, "x.\nUser:");
    got = stream(d, w.ids, w.n, &rc, false);
    cr_assert_eq(rc, DETOK_STOPPED);
    cr_assert_str_eq(got, "x.");
    free(got);
    detok_free(d);
    tok_ids_free(&w);
    tok_ids_free(&v);
    tok_free(t);
}

Test(detok, held_prefix_released_when_it_cannot_match)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    const char *stops[] = { "STOP!" };
    Detok *d;
    cr_assert_eq(detok_new(t, stops, 1, 0, &d), 0);
    TokIds v = encode_str(t, "a STO");
    const char *s;
    size_t l;
    size_t total = 0;
    for (size_t i = 0; i < v.n; i++) {
        cr_assert_eq(detok_feed(d, v.ids[i], &s, &l), DETOK_MORE);
        total += l;
    }
    cr_assert_eq(total, 2, "only \"a \" may be released, \"STO\" is held");
    cr_assert_eq(detok_pending(d), 3);
    TokIds w = encode_str(t, "RM");
    for (size_t i = 0; i < w.n; i++)
        cr_assert_eq(detok_feed(d, w.ids[i], &s, &l), DETOK_MORE);
    cr_assert_eq(detok_pending(d), 0);
    cr_assert_str_eq(detok_text(d, NULL), "a STORM");
    /* flush releases a held prefix */
    detok_reset(d);
    v.n = 0;
    cr_assert_eq(tok_encode(t, "end STOP", 8, 0, &v), 0);
    int rc;
    char *got = stream(d, v.ids, v.n, &rc, true);
    cr_assert_eq(rc, DETOK_MORE);
    cr_assert_str_eq(got, "end STOP");
    free(got);
    detok_free(d);
    tok_ids_free(&w);
    tok_ids_free(&v);
    tok_free(t);
}

Test(detok, keep_stop_and_skip_special)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    const char *stops[] = { "world" };
    Detok *d;
    cr_assert_eq(detok_new(t, stops, 1, DETOK_KEEP_STOP | DETOK_SKIP_SPECIAL, &d), 0);
    TokIds v = encode_str(t, "<|im_start|>hello world and more");
    int rc;
    char *got = stream(d, v.ids, v.n, &rc, true);
    cr_assert_eq(rc, DETOK_STOPPED);
    cr_assert_str_eq(got, "hello world");
    free(got);
    detok_free(d);
    tok_ids_free(&v);
    tok_free(t);
}

Test(detok, earliest_stop_wins)
{
    Tokenizer *t = load_hf_dir("bytelevel");
    const char *stops[] = { "cd", "bcde" };
    Detok *d;
    cr_assert_eq(detok_new(t, stops, 2, 0, &d), 0);
    TokIds v = encode_str(t, "abcdef");
    int rc;
    char *got = stream(d, v.ids, v.n, &rc, true);
    cr_assert_eq(rc, DETOK_STOPPED);
    cr_assert_str_eq(got, "a");
    cr_assert_eq(detok_stop_index(d), 1);
    free(got);
    detok_free(d);
    tok_ids_free(&v);
    tok_free(t);
}

Test(detok, stream_equals_decode_on_corpus)
{
    Tokenizer *t = load_hf_dir("spm_meta");
    json_error_t je;
    json_t *corpus = json_load_file(DATA "corpus.json", 0, &je);
    cr_assert_not_null(corpus);
    size_t i;
    const json_t *c;
    Detok *d;
    cr_assert_eq(detok_new(t, NULL, 0, 0, &d), 0);
    json_array_foreach(corpus, i, c)
    {
        TokIds v = { 0 };
        cr_assert_eq(tok_encode(t, json_string_value(c), json_string_length(c), 0, &v), 0);
        char *want;
        size_t wl;
        cr_assert_eq(tok_decode(t, v.ids, v.n, 0, &want, &wl), 0);
        detok_reset(d);
        int rc;
        char *got = stream(d, v.ids, v.n, &rc, true);
        cr_assert_eq(strlen(got), wl);
        cr_assert_eq(memcmp(got, want, wl), 0);
        free(got);
        free(want);
        tok_ids_free(&v);
    }
    detok_free(d);
    json_decref(corpus);
    tok_free(t);
}
