/*
 * bench/structured/bench_structured.c — the cost of structured generation's
 * token masks (issue 8), single-threaded: for each constraint, compile time,
 * time to first mask (a fresh grammar: cache empty) and per-token mask time
 * (mean, p50, p99, max) along walks through the masks, for each vocabulary:
 *
 *   the default model's (models/SmolLM2-135M-Instruct.Q4_1.gguf, 49k)
 *   Llama 3's (ggml-vocab-llama-bpe.gguf, 128k) from $SGL_TOK_VOCAB_DIR
 *   (default build/vocab)
 *
 * Walks: each valid instance in its canonical tokenization (tok_encode),
 * then random walks (random allowed tokens until end-of-generation is
 * chosen or WALK_MAX tokens; end is chosen with probability 1/8 when
 * allowed). Every step's cm_fill_mask is timed; the grammar (and so its
 * mask cache) lives for the whole case, as it does for an engine serving
 * many requests with one constraint. First-mask time is taken on a fresh
 * compile, so it includes filling the cache of the start state.
 *
 * Constraints: real-world regexes (cg_compile_regex), grammars built with
 * the builder (JSON values, arithmetic), GBNF texts through cg_compile_gbnf
 * and JSON Schemas through cg_compile_json, and a sample of the MaskBench schemas when SGL_MASKBENCH_DIR
 * names the unpacked data/ folder (bench/structured/run.sh sets it to
 * build/maskbench/data when that exists; one aggregate row).
 *
 * Usage: bench_structured [NAME-SUBSTRING]
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "constrain/constrain.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"

enum { WALK_MAX = 300, RANDOM_WALKS = 8 };

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

/* ---- vocabularies ------------------------------------------------------- */

typedef struct {
    const char *name;
    Tokenizer *tok;
    CVocab *v;
    size_t words;
} Vocab;

static bool load_vocab(Vocab *out, const char *name, const char *path)
{
    char err[256];
    GgufFile *f = gguf_open(path, err, sizeof err);
    if (!f)
        return false;
    Tokenizer *t;
    int rc = tok_load_gguf(f, &t, err, sizeof err);
    gguf_close(f);
    if (rc < 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        return false;
    }
    int32_t n = tok_vocab_size(t);
    const char **bytes = malloc((size_t)n * sizeof *bytes);
    size_t *lens = malloc((size_t)n * sizeof *lens);
    uint8_t *flags = malloc((size_t)n);
    for (int32_t i = 0; i < n; i++) {
        bytes[i] = tok_token_piece(t, i, &lens[i]);
        flags[i] = (uint8_t)((tok_is_special(t, i) ? CV_SPECIAL : 0) | (tok_is_eog(t, i) ? CV_EOG : 0));
    }
    double t0 = now_us();
    rc = cv_new(n, bytes, lens, flags, &out->v);
    double t1 = now_us();
    free(bytes);
    free(lens);
    free(flags);
    if (rc < 0) {
        tok_free(t);
        return false;
    }
    out->name = name;
    out->tok = t;
    out->words = cv_mask_words(out->v);
    printf("vocabulary %s: %d tokens, cv_new %.1f ms\n", name, n, (t1 - t0) / 1e3);
    return true;
}

/* ---- constraints -------------------------------------------------------- */

typedef enum { K_REGEX, K_GBNF, K_JSON, K_BUILT } Kind;

typedef struct {
    const char *name;
    Kind kind;
    const char *src;                /* regex / GBNF / schema text */
    int (*build)(CGrammar **out, char *err, size_t errcap);    /* K_BUILT */
    const char *inst[6];            /* valid instances */
    char *owned_src;                /* MaskBench: malloc'd (so are name and inst[]) */
} Case;

/* JSON values: value ::= object | array | string | number | true | false | null */
static int build_json(CGrammar **out, char *err, size_t errcap)
{
    CgBuilder *b = cgb_new(NULL);
    int value = cgb_rule(b, "value"), object = cgb_rule(b, "object"), array = cgb_rule(b, "array");
    int string = cgb_rule(b, "string");
    CgExpr ws = cgb_repeat(b, cgb_alt2(b, cgb_lit(b, " ", 1), cgb_lit(b, "\n", 1)), 0, 4);
    CgRange plain[] = { { 0x20, 0x21 }, { 0x23, 0x5b }, { 0x5d, 0x10ffff } };
    CgExpr esc = cgb_seq2(b, cgb_lit(b, "\\", 1), cgb_regex(b, "[\"\\\\/bfnrt]|u[0-9a-fA-F]{4}", 27, NULL, err, errcap));
    CgExpr ch = cgb_alt2(b, cgb_class(b, plain, 3, false), esc);
    CgExpr str[] = { cgb_lit(b, "\"", 1), cgb_repeat(b, ch, 0, CG_INF), cgb_lit(b, "\"", 1) };
    cgb_define(b, string, cgb_seq(b, str, 3));
    const char *num = "-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?";
    CgExpr number = cgb_regex(b, num, strlen(num), NULL, err, errcap);
    CgExpr member = cgb_seq(b, (CgExpr[]){ ws, cgb_ref(b, string), ws, cgb_lit(b, ":", 1), ws, cgb_ref(b, value), ws }, 7);
    CgExpr members = cgb_seq2(b, member, cgb_repeat(b, cgb_seq2(b, cgb_lit(b, ",", 1), member), 0, CG_INF));
    cgb_define(b, object, cgb_seq(b, (CgExpr[]){ cgb_lit(b, "{", 1), cgb_alt2(b, members, ws), cgb_lit(b, "}", 1) }, 3));
    CgExpr elem = cgb_seq(b, (CgExpr[]){ ws, cgb_ref(b, value), ws }, 3);
    CgExpr elems = cgb_seq2(b, elem, cgb_repeat(b, cgb_seq2(b, cgb_lit(b, ",", 1), elem), 0, CG_INF));
    cgb_define(b, array, cgb_seq(b, (CgExpr[]){ cgb_lit(b, "[", 1), cgb_alt2(b, elems, ws), cgb_lit(b, "]", 1) }, 3));
    CgExpr alts[] = { cgb_ref(b, object), cgb_ref(b, array), cgb_ref(b, string), number,
                      cgb_lit(b, "true", 4), cgb_lit(b, "false", 5), cgb_lit(b, "null", 4) };
    cgb_define(b, value, cgb_alt(b, alts, 7));
    int rc = cgb_build(b, value, out, err, errcap);
    cgb_free(b);
    return rc;
}

/* expr ::= term (("+"|"-") term)* ; term ::= factor (("*"|"/") factor)* ;
 * factor ::= number | "(" expr ")" | "-" factor */
static int build_arith(CGrammar **out, char *err, size_t errcap)
{
    CgBuilder *b = cgb_new(NULL);
    int expr = cgb_rule(b, "expr"), term = cgb_rule(b, "term"), factor = cgb_rule(b, "factor");
    CgExpr sp = cgb_repeat(b, cgb_lit(b, " ", 1), 0, 1);
    CgExpr addop = cgb_seq(b, (CgExpr[]){ sp, cgb_regex(b, "[+-]", 4, NULL, err, errcap), sp }, 3);
    CgExpr mulop = cgb_seq(b, (CgExpr[]){ sp, cgb_regex(b, "[*/]", 4, NULL, err, errcap), sp }, 3);
    cgb_define(b, expr, cgb_seq2(b, cgb_ref(b, term), cgb_repeat(b, cgb_seq2(b, addop, cgb_ref(b, term)), 0, CG_INF)));
    cgb_define(b, term, cgb_seq2(b, cgb_ref(b, factor), cgb_repeat(b, cgb_seq2(b, mulop, cgb_ref(b, factor)), 0, CG_INF)));
    CgExpr num = cgb_regex(b, "[0-9]+(\\.[0-9]+)?", 17, NULL, err, errcap);
    CgExpr paren = cgb_seq(b, (CgExpr[]){ cgb_lit(b, "(", 1), cgb_ref(b, expr), cgb_lit(b, ")", 1) }, 3);
    CgExpr neg = cgb_seq2(b, cgb_lit(b, "-", 1), cgb_ref(b, factor));
    cgb_define(b, factor, cgb_alt(b, (CgExpr[]){ num, paren, neg }, 3));
    int rc = cgb_build(b, expr, out, err, errcap);
    cgb_free(b);
    return rc;
}

static Case cases[64 + 1024];
static int ncases;

static void add_cases(void)
{
    static const Case fixed[] = {
        { "regex email", K_REGEX, "[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}", NULL,
          { "john.doe@example.com", "a_b+c@mail.server.org" } },
        { "regex date-time", K_REGEX, "\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})", NULL,
          { "2024-05-17T13:45:00Z", "1999-12-31T23:59:59.999+01:00" } },
        { "regex ipv4", K_REGEX, "((25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)", NULL,
          { "192.168.0.1", "10.255.3.47" } },
        { "regex uuid", K_REGEX, "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", NULL,
          { "123e4567-e89b-12d3-a456-426614174000" } },
        { "regex phone", K_REGEX, "\\(\\d{3}\\) \\d{3}-\\d{4}", NULL, { "(555) 123-4567" } },
        { "regex float", K_REGEX, "-?(0|[1-9]\\d*)(\\.\\d+)?([eE][+-]?\\d+)?", NULL, { "-12.5e+10", "0", "3.14159" } },
        { "regex choices", K_REGEX, "(yes|no|maybe|I don't know)", NULL, { "yes", "I don't know" } },
        { "regex sentence", K_REGEX, "[A-Z][a-z]+( [a-z]+)*\\.", NULL, { "The quick brown fox jumps over the lazy dog." } },
        { "regex url", K_REGEX, "https?://[a-z0-9.-]+(/[a-zA-Z0-9._~-]*)*", NULL,
          { "https://example.com/path/to/file.html", "http://a.b" } },
        { "regex json-object", K_REGEX,
          "\\{\"name\": \"[^\"\\\\\\x00-\\x1f]{1,40}\", \"age\": \\d{1,3}, \"city\": \"[A-Za-z ]+\"\\}", NULL,
          { "{\"name\": \"Ada Lovelace\", \"age\": 36, \"city\": \"London\"}" } },
        { "regex free-line", K_REGEX, "[^\\n]{0,300}\\n", NULL,
          { "Anything at all, ünïcödé included — up to three hundred characters.\n" } },
        { "regex markdown-list", K_REGEX, "(- [A-Z][^\\n]{0,80}\\n){1,5}", NULL,
          { "- First item here\n- Second item, with a comma\n- Third\n" } },
        { "grammar json", K_BUILT, NULL, build_json,
          { "{\"a\": [1, 2.5, -3e2, true, null], \"b\": {\"c\": \"d\\n\\u00e9\"}}",
            "[{\"id\": 1, \"tags\": [\"x\", \"y\"]}, {\"id\": 2, \"tags\": []}]", "\"just a string\"" } },
        { "grammar arithmetic", K_BUILT, NULL, build_arith, { "(1 + 2) * 3 - -4 / (5.5 - 6)", "((((7))))" } },
        { "gbnf json", K_GBNF,
          "root ::= object\n"
          "value ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
          "object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
          "array ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
          "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
          "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws\n"
          "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n",
          NULL, { "{\"name\": \"x\", \"list\": [1, 2, {\"deep\": [true, null]}]}" } },
        { "gbnf list", K_GBNF,
          "root ::= item+\n"
          "item ::= \"- \" [^\\r\\n\\x0b\\x0c\\x85\\u2028\\u2029]+ \"\\n\"\n",
          NULL, { "- milk\n- eggs\n- flour\n" } },
        { "gbnf arithmetic", K_GBNF,
          "root ::= expr\n"
          "expr ::= term ([-+*/] term)*\n"
          "term ::= [0-9]+ | \"(\" expr \")\"\n",
          NULL, { "(1+2)*3-(4/5)" } },
        { "json-schema person", K_JSON,
          "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": {\"type\": \"integer\","
          " \"minimum\": 0, \"maximum\": 150}, \"emails\": {\"type\": \"array\", \"items\": {\"type\": \"string\","
          " \"format\": \"email\"}}}, \"required\": [\"name\", \"age\"], \"additionalProperties\": false}",
          NULL, { "{\"name\": \"Ada\", \"age\": 36, \"emails\": [\"ada@example.com\"]}" } },
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        cases[ncases++] = fixed[i];
    /* MaskBench schemas: SGL_MASKBENCH_DIR = the unpacked data/ folder
     * (`make maskbench` unpacks it into build/maskbench/data). Each file is
     * {"schema": ..., "tests": [{"data": ..., "valid": ...}]}; the valid
     * tests, serialized as json.dumps does (", " and ": "), are the
     * instances. SGL_MASKBENCH_LIMIT (default 400) takes that many files,
     * evenly spaced in name order. */
    const char *dir = getenv("SGL_MASKBENCH_DIR");
    const char *lim = getenv("SGL_MASKBENCH_LIMIT");
    int limit = lim ? atoi(lim) : 400;
    struct dirent **names = NULL;
    int nn = dir ? scandir(dir, &names, NULL, alphasort) : 0;
    int njson = 0;
    for (int i = 0; i < nn; i++)
        njson += strlen(names[i]->d_name) > 5 && !strcmp(names[i]->d_name + strlen(names[i]->d_name) - 5, ".json");
    int taken = 0, seen = 0;
    for (int i = 0; i < nn; i++) {
        const char *nm = names[i]->d_name;
        size_t l = strlen(nm);
        if (l <= 5 || strcmp(nm + l - 5, ".json"))
            continue;
        int k = seen++;
        /* evenly spaced: take file k when it crosses the next multiple */
        if (limit <= 0 || (long)taken * njson > (long)k * limit || taken >= limit ||
            ncases >= (int)(sizeof cases / sizeof cases[0]))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        json_error_t je;
        json_t *doc = json_load_file(path, JSON_DECODE_ANY, &je);
        json_t *schema = doc ? json_object_get(doc, "schema") : NULL;
        if (!schema) {
            json_decref(doc);
            continue;
        }
        Case c = { 0 };
        c.name = strdup(nm);
        c.kind = K_JSON;
        c.owned_src = json_dumps(schema, JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        c.src = c.owned_src;
        json_t *tests = json_object_get(doc, "tests");
        int ni = 0;
        for (size_t t = 0; t < json_array_size(tests) && ni < 2; t++) {
            json_t *tc = json_array_get(tests, t);
            if (json_is_true(json_object_get(tc, "valid")))
                c.inst[ni++] = json_dumps(json_object_get(tc, "data"),
                                          JSON_PRESERVE_ORDER | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
        }
        json_decref(doc);
        cases[ncases++] = c;
        taken++;
    }
    for (int i = 0; i < nn; i++)
        free(names[i]);
    free(names);
}

static int compile_case(const Case *c, CGrammar **g, char *err, size_t errcap)
{
    int pos, line, col;
    switch (c->kind) {
    case K_REGEX:
        return cg_compile_regex(c->src, strlen(c->src), NULL, g, &pos, err, errcap);
    case K_GBNF:
        return cg_compile_gbnf(c->src, strlen(c->src), NULL, g, &line, &col, err, errcap);
    case K_JSON:
        return cg_compile_json(c->src, strlen(c->src), NULL, NULL, g, err, errcap);
    case K_BUILT:
        return c->build(g, err, errcap);
    }
    return ERR_ARG;
}

/* ---- timing ------------------------------------------------------------- */

typedef struct {
    double *t;
    size_t n, cap;
} Samples;

static void push(Samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->t = realloc(s->t, s->cap * sizeof *s->t);
    }
    s->t[s->n++] = x;
}

static int cmpd(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const Samples *s, double p)
{
    if (!s->n)
        return 0;
    size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
    return s->t[i];
}

static void summary(const char *label, Samples *s, Samples *first, Samples *comp)
{
    qsort(s->t, s->n, sizeof *s->t, cmpd);
    double sum = 0;
    for (size_t i = 0; i < s->n; i++)
        sum += s->t[i];
    qsort(first->t, first->n, sizeof *first->t, cmpd);
    qsort(comp->t, comp->n, sizeof *comp->t, cmpd);
    printf("%-28s compile p50 %9.1f us  first mask p50 %8.1f us max %8.1f  per-token n=%-6zu mean %7.1f p50 %7.1f "
           "p99 %8.1f max %8.1f us\n",
           label, pct(comp, 0.5), pct(first, 0.5), first->n ? first->t[first->n - 1] : 0, s->n,
           s->n ? sum / (double)s->n : 0, pct(s, 0.5), pct(s, 0.99), s->n ? s->t[s->n - 1] : 0);
}

/* Times masks along one walk: ids (a valid tokenization) or, when ids is
 * NULL, random allowed tokens. */
static bool quiet;      /* MaskBench cases: count problems, do not print them */
static int n_refused;   /* instance tokens refused / empty masks seen */

static void walk(CMatcher *m, const Vocab *vb, uint32_t *mask, const int32_t *ids, size_t nids, Samples *s)
{
    for (size_t k = 0; k < (ids ? nids + 1 : WALK_MAX); k++) {
        double t0 = now_us();
        int c = cm_fill_mask(m, mask);
        double t1 = now_us();
        push(s, t1 - t0);
        if (c <= 0) {
            n_refused++;
            if (!quiet)
                printf("  !! empty mask at step %zu\n", k);
            return;
        }
        int32_t pick;
        if (ids) {
            if (k == nids)
                return;
            pick = ids[k];
        } else {
            /* end with probability 1/8 when allowed, else a random text token */
            int32_t eog = -1;
            int32_t text[64];
            int nt = 0;
            uint32_t tries = 0;
            int32_t n = cv_size(vb->v);
            while (nt < 64 && tries++ < 20000) {
                int32_t t = (int32_t)rnd((uint32_t)n);
                if (mask[t >> 5] >> (t & 31) & 1) {
                    if (tok_is_eog(vb->tok, t))
                        eog = t;
                    else
                        text[nt++] = t;
                }
            }
            if (nt == 0 || (eog >= 0 && rnd(8) == 0)) {
                for (size_t w = 0; w < vb->words && eog < 0; w++)
                    for (uint32_t x = mask[w]; x && eog < 0; x &= x - 1) {
                        int32_t t = (int32_t)(w * 32 + (size_t)__builtin_ctz(x));
                        if (tok_is_eog(vb->tok, t) || nt == 0)
                            eog = t;
                    }
                pick = eog;
            } else
                pick = text[rnd((uint32_t)nt)];
        }
        if (cm_accept_token(m, pick) < 0) {
            n_refused++;
            if (!quiet)
                printf("  !! token %d refused\n", pick);
            return;
        }
        if (cm_is_finished(m) && !cm_can_end(m))
            return;
        if (tok_is_eog(vb->tok, pick))
            return;
    }
}

static void merge(Samples *to, const Samples *from)
{
    for (size_t i = 0; i < from->n; i++)
        push(to, from->t[i]);
}

static void bench_vocab(const Vocab *vb, const char *filter)
{
    uint32_t *mask = malloc(vb->words * sizeof *mask);
    Samples all = { 0 }, all_first = { 0 }, all_comp = { 0 };
    Samples mb = { 0 }, mb_first = { 0 }, mb_comp = { 0 };
    int ran = 0, mb_ran = 0, mb_refused = 0;
    n_refused = 0;
    for (int ci = 0; ci < ncases; ci++) {
        const Case *c = &cases[ci];
        if (filter && !strstr(c->name, filter))
            continue;
        bool maskbench = c->owned_src != NULL;
        quiet = maskbench;
        char err[512];
        Samples s = { 0 }, first = { 0 }, comp = { 0 };
        CGrammar *g = NULL;
        int rc = 0;
        /* compile and first mask: fresh compiles (three, one for MaskBench) */
        int reps = maskbench ? 1 : 3;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = now_us();
            rc = compile_case(c, &g, err, sizeof err);
            double t1 = now_us();
            if (rc < 0)
                break;
            CMatcher *m;
            double t2 = now_us();
            cm_new(g, vb->v, &m);
            cm_fill_mask(m, mask);
            double t3 = now_us();
            push(&comp, t1 - t0);
            push(&first, t3 - t2);
            cm_free(m);
            if (rep < reps - 1)
                cg_unref(g);
        }
        if (rc < 0) {
            if (maskbench)
                mb_refused++;
            else
                printf("%-28s skipped: %s\n", c->name, err);
            continue;
        }
        for (int i = 0; i < 6 && c->inst[i]; i++) {
            TokIds ids = { 0 };
            tok_encode(vb->tok, c->inst[i], strlen(c->inst[i]), 0, &ids);
            CMatcher *m;
            cm_new(g, vb->v, &m);
            int before = n_refused;
            walk(m, vb, mask, ids.ids, ids.n, &s);
            if (n_refused == before && !cm_can_end(m)) {
                n_refused++;
                if (!quiet)
                    printf("  !! %s: instance %d not accepted at its end\n", c->name, i);
            }
            cm_free(m);
            tok_ids_free(&ids);
        }
        for (int r = 0; r < (maskbench ? 2 : RANDOM_WALKS); r++) {
            CMatcher *m;
            cm_new(g, vb->v, &m);
            walk(m, vb, mask, NULL, 0, &s);
            cm_free(m);
        }
        if (maskbench) {
            double worst = 0;
            for (size_t i = 0; i < s.n; i++)
                worst = s.t[i] > worst ? s.t[i] : worst;
            if (first.t[0] > 10000 || worst > 10000)
                printf("  slow: %s: compile %.0f us, first mask %.0f us, worst mask %.0f us\n", c->name, comp.t[0],
                       first.t[0], worst);
            merge(&mb, &s);
            merge(&mb_first, &first);
            merge(&mb_comp, &comp);
            mb_ran++;
        } else {
            summary(c->name, &s, &first, &comp);
            merge(&all, &s);
            merge(&all_first, &first);
            merge(&all_comp, &comp);
            ran++;
        }
        free(s.t);
        free(first.t);
        free(comp.t);
        cg_unref(g);
    }
    char label[64];
    if (ran) {
        snprintf(label, sizeof label, "ALL (%d constraints)", ran);
        summary(label, &all, &all_first, &all_comp);
    }
    if (mb_ran || mb_refused) {
        snprintf(label, sizeof label, "MaskBench (%d schemas)", mb_ran);
        summary(label, &mb, &mb_first, &mb_comp);
        printf("  MaskBench sample: %d compiled, %d refused by cg_compile_json; %d walks stopped early "
               "(instance token refused, e.g. a float serialized unlike Python)\n",
               mb_ran, mb_refused, n_refused);
    }
    free(all.t);
    free(all_first.t);
    free(all_comp.t);
    free(mb.t);
    free(mb_first.t);
    free(mb_comp.t);
    free(mask);
}

int main(int argc, char **argv)
{
    const char *filter = argc > 1 ? argv[1] : NULL;
    add_cases();
    const char *vdir = getenv("SGL_TOK_VOCAB_DIR");
    char llama3[4096];
    snprintf(llama3, sizeof llama3, "%s/ggml-vocab-llama-bpe.gguf", vdir ? vdir : "build/vocab");
    Vocab vs[2];
    int nv = 0;
    if (load_vocab(&vs[nv], "SmolLM2 (default, 49k)", "models/SmolLM2-135M-Instruct.Q4_1.gguf"))
        nv++;
    if (load_vocab(&vs[nv], "Llama 3 (128k)", llama3))
        nv++;
    if (!nv) {
        fprintf(stderr, "bench/structured: no vocabulary found (make model vocab)\n");
        return 1;
    }
    for (int i = 0; i < nv; i++) {
        printf("\n== %s: single thread, times in microseconds ==\n", vs[i].name);
        bench_vocab(&vs[i], filter);
    }
    for (int i = 0; i < nv; i++) {
        cv_unref(vs[i].v);
        tok_free(vs[i].tok);
    }
    for (int i = 0; i < ncases; i++)
        if (cases[i].owned_src) {
            free(cases[i].owned_src);
            free((char *)cases[i].name);
            for (int k = 0; k < 6; k++)
                free((char *)cases[i].inst[k]);
        }
    return 0;
}
