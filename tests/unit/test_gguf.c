/*
 * tests/unit/test_gguf.c — the GGUF reader: the default model's metadata and
 * tensors, and hand-written files covering every value type, arrays, both
 * versions, alignment and damaged files.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/backend.h"
#include "runtime/gguf.h"

#define MODEL_PATH "models/SmolLM2-135M-Instruct.Q4_1.gguf"

static char err[512];

/* ---- the default model ----------------------------------------------------------- */

Test(gguf_model, metadata_and_tensors)
{
    if (access(MODEL_PATH, R_OK) != 0) cr_skip_test("%s not found: run `make model` to fetch it", MODEL_PATH);
    GgufFile *f = gguf_open(MODEL_PATH, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert_eq(gguf_version(f), 3);
    cr_assert_eq(gguf_alignment(f), 32);
    cr_assert_eq(gguf_n_kv(f), 33);
    cr_assert_eq(gguf_n_tensors(f), 272);

    const char *s;
    size_t n;
    cr_assert_eq(gguf_get_str(f, "general.architecture", &s, &n, err, sizeof err), 0, "%s", err);
    cr_assert(n == 5 && memcmp(s, "llama", 5) == 0);
    uint32_t u;
    cr_assert_eq(gguf_get_u32(f, "llama.block_count", &u, err, sizeof err), 0);
    cr_assert_eq(u, 30);
    int64_t i64;
    cr_assert_eq(gguf_get_i64(f, "llama.context_length", &i64, err, sizeof err), 0);
    cr_assert_eq(i64, 8192);
    float fl;
    cr_assert_eq(gguf_get_f32(f, "llama.rope.freq_base", &fl, err, sizeof err), 0);
    cr_assert_float_eq(fl, 100000.0f, 1e-3);
    cr_assert_eq(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &fl, err, sizeof err), 0);
    cr_assert_float_eq(fl, 1e-5f, 1e-9);
    bool b = true;
    cr_assert_eq(gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b, err, sizeof err), 0);
    cr_assert(!b);
    cr_assert_eq(gguf_get_str(f, "tokenizer.ggml.model", &s, &n, err, sizeof err), 0);
    cr_assert(n == 4 && memcmp(s, "gpt2", 4) == 0);
    cr_assert_eq(gguf_get_u32(f, "tokenizer.ggml.eos_token_id", &u, err, sizeof err), 0);
    cr_assert_eq(u, 2);
    cr_assert_eq(gguf_get_str(f, "tokenizer.chat_template", &s, &n, err, sizeof err), 0);
    cr_assert(n > 100 && memmem(s, n, "<|im_start|>", 12));

    /* string array: tokens */
    const GgufKV *toks = gguf_find(f, "tokenizer.ggml.tokens");
    cr_assert(toks);
    cr_assert_eq(toks->type, GGUF_TYPE_ARRAY);
    cr_assert_eq(toks->arr_type, GGUF_TYPE_STRING);
    cr_assert_eq(toks->arr_n, 49152);
    cr_assert_eq(gguf_arr_str(toks, 1, &s, &n), 0);
    cr_assert(n == 12 && memcmp(s, "<|im_start|>", 12) == 0, "token 1 is '%.*s'", (int)n, s);
    cr_assert_eq(gguf_arr_str(toks, 49151, &s, &n), 0);
    cr_assert_neq(gguf_arr_str(toks, 49152, &s, &n), 0, "past the end");
    int64_t tt;
    cr_assert_neq(gguf_arr_i64(toks, 0, &tt), 0, "a string array is not an int array");
    /* int array: token types; string array: merges */
    const GgufKV *types = gguf_find(f, "tokenizer.ggml.token_type");
    cr_assert(types && types->arr_type == GGUF_TYPE_INT32 && types->arr_n == 49152);
    cr_assert_eq(gguf_arr_i64(types, 0, &tt), 0);
    cr_assert_eq(tt, 3, "token 0 is a control token");
    double dd;
    cr_assert_eq(gguf_arr_f64(types, 0, &dd), 0);
    const GgufKV *merges = gguf_find(f, "tokenizer.ggml.merges");
    cr_assert(merges && merges->arr_type == GGUF_TYPE_STRING && merges->arr_n == 48900);
    cr_assert_eq(gguf_arr_str(merges, 0, &s, &n), 0);
    cr_assert(memchr(s, ' ', n), "merges are 'a b' pairs");

    /* tensors */
    const GgufTensor *te = gguf_find_tensor(f, "token_embd.weight");
    cr_assert(te);
    cr_assert_eq(te->ggml_type, K_DTYPE_Q8_0);
    cr_assert_eq(te->n_dims, 2);
    cr_assert(te->ne[0] == 576 && te->ne[1] == 49152 && te->ne[2] == 1);
    cr_assert_eq(te->nbytes, (uint64_t)49152 * 18 * 34);
    const GgufTensor *q = gguf_find_tensor(f, "blk.29.attn_q.weight");
    cr_assert(q && q->ggml_type == K_DTYPE_Q4_1 && q->ne[0] == 576 && q->ne[1] == 576);
    cr_assert_eq(q->nbytes, (uint64_t)576 * 18 * 20);
    cr_assert_eq((uintptr_t)q->data % 32, 0, "tensor data is aligned");
    cr_assert_null(gguf_find_tensor(f, "output.weight"), "SmolLM2 ties its embeddings");

    /* iteration reaches every entry */
    size_t found = 0;
    for (size_t i = 0; i < gguf_n_kv(f); i++) found += gguf_kv(f, i) != NULL;
    cr_assert_eq(found, 33);
    cr_assert_null(gguf_kv(f, 33));

    /* errors name the key */
    cr_assert_neq(gguf_get_u32(f, "no.such.key", &u, err, sizeof err), 0);
    cr_assert(strstr(err, "'no.such.key' is missing"), "%s", err);
    cr_assert_neq(gguf_get_u32(f, "general.architecture", &u, err, sizeof err), 0);
    cr_assert(strstr(err, "has type str, expected an integer"), "%s", err);
    gguf_close(f);
}

/* ---- hand-written files ---------------------------------------------------------------- */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} Buf;

static void put(Buf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->b = realloc(b->b, b->cap);
    }
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
#define PUTV(b, T, v) do { T v_ = (v); put(b, &v_, sizeof v_); } while (0)
static void put_str(Buf *b, const char *s)
{
    PUTV(b, uint64_t, strlen(s));
    put(b, s, strlen(s));
}
static void key(Buf *b, const char *k, GgufType t)
{
    put_str(b, k);
    PUTV(b, uint32_t, t);
}

static char *write_tmp(const Buf *b)
{
    static char path[64];
    strcpy(path, "/tmp/sgl_test_gguf_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, b->b, b->n), (ssize_t)b->n);
    close(fd);
    return path;
}

/* One entry of every type, arrays of ints/floats/strings/bools, two tensors. */
static Buf every_type(uint32_t version, uint32_t alignment)
{
    Buf b = {0};
    put(&b, "GGUF", 4);
    PUTV(&b, uint32_t, version);
    PUTV(&b, uint64_t, 2);                    /* tensors */
    PUTV(&b, uint64_t, alignment ? 19 : 18);  /* kvs */
    key(&b, "t.u8", GGUF_TYPE_UINT8); PUTV(&b, uint8_t, 200);
    key(&b, "t.i8", GGUF_TYPE_INT8); PUTV(&b, int8_t, -100);
    key(&b, "t.u16", GGUF_TYPE_UINT16); PUTV(&b, uint16_t, 60000);
    key(&b, "t.i16", GGUF_TYPE_INT16); PUTV(&b, int16_t, -30000);
    key(&b, "t.u32", GGUF_TYPE_UINT32); PUTV(&b, uint32_t, 4000000000u);
    key(&b, "t.i32", GGUF_TYPE_INT32); PUTV(&b, int32_t, -2000000000);
    key(&b, "t.f32", GGUF_TYPE_FLOAT32); PUTV(&b, float, 1.5f);
    key(&b, "t.bool", GGUF_TYPE_BOOL); PUTV(&b, uint8_t, 1);
    key(&b, "t.str", GGUF_TYPE_STRING); put_str(&b, "héllo");
    key(&b, "t.u64", GGUF_TYPE_UINT64); PUTV(&b, uint64_t, 1ull << 40);
    key(&b, "t.i64", GGUF_TYPE_INT64); PUTV(&b, int64_t, -(1ll << 40));
    key(&b, "t.f64", GGUF_TYPE_FLOAT64); PUTV(&b, double, 0.25);
    key(&b, "t.big_u64", GGUF_TYPE_UINT64); PUTV(&b, uint64_t, ~0ull);
    key(&b, "a.i32", GGUF_TYPE_ARRAY); PUTV(&b, uint32_t, GGUF_TYPE_INT32); PUTV(&b, uint64_t, 3);
    PUTV(&b, int32_t, -1); PUTV(&b, int32_t, 0); PUTV(&b, int32_t, 7);
    key(&b, "a.f32", GGUF_TYPE_ARRAY); PUTV(&b, uint32_t, GGUF_TYPE_FLOAT32); PUTV(&b, uint64_t, 2);
    PUTV(&b, float, 0.5f); PUTV(&b, float, -2.0f);
    key(&b, "a.str", GGUF_TYPE_ARRAY); PUTV(&b, uint32_t, GGUF_TYPE_STRING); PUTV(&b, uint64_t, 3);
    put_str(&b, "a"); put_str(&b, ""); put_str(&b, "ccc");
    key(&b, "a.bool", GGUF_TYPE_ARRAY); PUTV(&b, uint32_t, GGUF_TYPE_BOOL); PUTV(&b, uint64_t, 2);
    PUTV(&b, uint8_t, 0); PUTV(&b, uint8_t, 1);
    key(&b, "a.empty", GGUF_TYPE_ARRAY); PUTV(&b, uint32_t, GGUF_TYPE_UINT8); PUTV(&b, uint64_t, 0);
    if (alignment) { key(&b, "general.alignment", GGUF_TYPE_UINT32); PUTV(&b, uint32_t, alignment); }
    uint32_t al = alignment ? alignment : 32;
    /* tensor 1: f32 [4, 2]; tensor 2: q8_0 [32] (34 bytes) at the next aligned offset */
    put_str(&b, "w.f32"); PUTV(&b, uint32_t, 2); PUTV(&b, uint64_t, 4); PUTV(&b, uint64_t, 2);
    PUTV(&b, uint32_t, K_DTYPE_F32); PUTV(&b, uint64_t, 0);
    put_str(&b, "w.q8"); PUTV(&b, uint32_t, 1); PUTV(&b, uint64_t, 32);
    PUTV(&b, uint32_t, K_DTYPE_Q8_0); PUTV(&b, uint64_t, (32 + al - 1) / al * al);
    while (b.n % al) put(&b, "\0", 1);
    for (int i = 0; i < 8; i++) PUTV(&b, float, (float)i);
    while (b.n % al) put(&b, "\0", 1);
    uint8_t q8[34] = {0x00, 0x3c}; /* d = 1.0 */
    for (int i = 0; i < 32; i++) q8[2 + i] = (uint8_t)(i - 16);
    put(&b, q8, 34);
    return b;
}

static void check_every_type(GgufFile *f)
{
    int64_t v;
    double d;
    const char *s;
    size_t n;
    struct { const char *k; int64_t want; } ints[] = {
        {"t.u8", 200}, {"t.i8", -100}, {"t.u16", 60000}, {"t.i16", -30000}, {"t.u32", 4000000000ll},
        {"t.i32", -2000000000}, {"t.bool", 1}, {"t.u64", 1ll << 40}, {"t.i64", -(1ll << 40)},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cr_assert_eq(gguf_get_i64(f, ints[i].k, &v, err, sizeof err), 0, "%s: %s", ints[i].k, err);
        cr_assert_eq(v, ints[i].want, "%s", ints[i].k);
    }
    cr_assert_neq(gguf_get_i64(f, "t.big_u64", &v, err, sizeof err), 0, "u64 above INT64_MAX does not fit");
    float fl;
    cr_assert_eq(gguf_get_f32(f, "t.f32", &fl, err, sizeof err), 0);
    cr_assert_eq(fl, 1.5f);
    cr_assert_eq(gguf_get_f32(f, "t.f64", &fl, err, sizeof err), 0);
    cr_assert_eq(fl, 0.25f);
    cr_assert_eq(gguf_get_f32(f, "t.u8", &fl, err, sizeof err), 0, "integers read as floats");
    cr_assert_eq(fl, 200.0f);
    uint32_t u;
    cr_assert_neq(gguf_get_u32(f, "t.i8", &u, err, sizeof err), 0, "negative into u32");
    cr_assert(strstr(err, "out of range"), "%s", err);
    bool bo;
    cr_assert_eq(gguf_get_bool(f, "t.bool", &bo, err, sizeof err), 0);
    cr_assert(bo);
    cr_assert_neq(gguf_get_bool(f, "t.f32", &bo, err, sizeof err), 0);
    cr_assert_eq(gguf_get_str(f, "t.str", &s, &n, err, sizeof err), 0);
    cr_assert(n == 6 && memcmp(s, "héllo", 6) == 0);

    const GgufKV *a = gguf_find(f, "a.i32");
    cr_assert(a && a->type == GGUF_TYPE_ARRAY && a->arr_type == GGUF_TYPE_INT32 && a->arr_n == 3);
    int64_t want_i[] = {-1, 0, 7};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(gguf_arr_i64(a, (uint64_t)i, &v), 0);
        cr_assert_eq(v, want_i[i]);
    }
    cr_assert_neq(gguf_arr_i64(a, 3, &v), 0);
    a = gguf_find(f, "a.f32");
    cr_assert_eq(gguf_arr_f64(a, 1, &d), 0);
    cr_assert_eq(d, -2.0);
    cr_assert_neq(gguf_arr_i64(a, 0, &v), 0, "a float array is not read as ints");
    a = gguf_find(f, "a.str");
    const char *want_s[] = {"a", "", "ccc"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(gguf_arr_str(a, (uint64_t)i, &s, &n), 0);
        cr_assert(n == strlen(want_s[i]) && memcmp(s, want_s[i], n) == 0);
    }
    a = gguf_find(f, "a.bool");
    cr_assert_eq(gguf_arr_i64(a, 1, &v), 0);
    cr_assert_eq(v, 1);
    a = gguf_find(f, "a.empty");
    cr_assert(a && a->arr_n == 0);
    cr_assert_neq(gguf_arr_i64(a, 0, &v), 0);

    const GgufTensor *t = gguf_find_tensor(f, "w.f32");
    cr_assert(t && t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 2 && t->nbytes == 32);
    cr_assert_eq(((const float *)t->data)[5], 5.0f);
    t = gguf_find_tensor(f, "w.q8");
    cr_assert(t && t->ggml_type == K_DTYPE_Q8_0 && t->nbytes == 34);
    cr_assert_eq(((const int8_t *)t->data)[2], -16);
    cr_assert_eq((uintptr_t)t->data % gguf_alignment(f), 0);
}

Test(gguf_file, every_value_type_v3)
{
    Buf b = every_type(3, 0);
    char *p = write_tmp(&b);
    GgufFile *f = gguf_open(p, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert_eq(gguf_version(f), 3);
    check_every_type(f);
    gguf_close(f);
    unlink(p);
    free(b.b);
}

Test(gguf_file, version_2_and_custom_alignment)
{
    Buf b = every_type(2, 64);
    char *p = write_tmp(&b);
    GgufFile *f = gguf_open(p, err, sizeof err);
    cr_assert(f, "%s", err);
    cr_assert_eq(gguf_version(f), 2);
    cr_assert_eq(gguf_alignment(f), 64);
    check_every_type(f);
    gguf_close(f);
    unlink(p);
    free(b.b);
}

Test(gguf_file, every_truncation_fails_cleanly)
{
    Buf b = every_type(3, 0);
    /* cut the file at every length: each must fail with a message (or, past
     * the header, succeed only when nothing is missing) and never crash */
    for (size_t cut = 0; cut < b.n; cut++) {
        Buf c = {b.b, cut, cut};
        char *p = write_tmp(&c);
        err[0] = 0;
        GgufFile *f = gguf_open(p, err, sizeof err);
        cr_assert_null(f, "a file cut at %zu of %zu bytes opened", cut, b.n);
        cr_assert(err[0], "no message at cut %zu", cut);
        unlink(p);
    }
    free(b.b);
}

Test(gguf_file, bad_magic_version_and_missing_file)
{
    Buf b = every_type(3, 0);
    memcpy(b.b, "GGUX", 4);
    char *p = write_tmp(&b);
    cr_assert_null(gguf_open(p, err, sizeof err));
    cr_assert(strstr(err, "bad magic"), "%s", err);
    unlink(p);
    memcpy(b.b, "GGUF", 4);
    uint32_t v1 = 1;
    memcpy(b.b + 4, &v1, 4);
    p = write_tmp(&b);
    cr_assert_null(gguf_open(p, err, sizeof err));
    cr_assert(strstr(err, "version 1 is not supported"), "%s", err);
    unlink(p);
    cr_assert_null(gguf_open("/nonexistent/model.gguf", err, sizeof err));
    cr_assert(strstr(err, "/nonexistent/model.gguf: cannot open"), "%s", err);
    free(b.b);
}

Test(gguf_file, unknown_tensor_type_is_kept_without_data)
{
    Buf b = {0};
    put(&b, "GGUF", 4);
    PUTV(&b, uint32_t, 3);
    PUTV(&b, uint64_t, 1);
    PUTV(&b, uint64_t, 0);
    put_str(&b, "w.q3k");
    PUTV(&b, uint32_t, 1);
    PUTV(&b, uint64_t, 256);
    PUTV(&b, uint32_t, 11); /* Q3_K */
    PUTV(&b, uint64_t, 0);
    while (b.n % 32) put(&b, "\0", 1);
    for (int i = 0; i < 110; i++) put(&b, "\0", 1);
    char *p = write_tmp(&b);
    GgufFile *f = gguf_open(p, err, sizeof err);
    cr_assert(f, "%s", err);
    const GgufTensor *t = gguf_find_tensor(f, "w.q3k");
    cr_assert(t && t->ggml_type == 11 && t->data == NULL && t->nbytes == 0);
    gguf_close(f);
    unlink(p);
    free(b.b);
}

Test(gguf_file, tensor_past_the_end_is_reported)
{
    Buf b = every_type(3, 0);
    b.n -= 1; /* the q8 tensor loses its last byte */
    char *p = write_tmp(&b);
    cr_assert_null(gguf_open(p, err, sizeof err));
    cr_assert(strstr(err, "tensor 'w.q8' data lies outside the file"), "%s", err);
    unlink(p);
    free(b.b);
}
