/*
 * bench/maskbench/maskbench.c — the MaskBench corpus of JSONSchemaBench
 * judged with `sgl check` semantics (issue 8).
 *
 *   for each schema file: cg_compile_json(schema)
 *     for each test: text = json.dumps(data, indent=None, ensure_ascii=False)
 *                    ids  = the default model's canonical tokenization
 *                    each id: cm_fill_mask, must be allowed, cm_accept_token
 *                    then end-of-generation must be allowed (cm_can_end)
 *   a schema passes when it compiles and every test is judged right
 *
 * The serialization is the one maskbench's runner uses (Python's json.dumps
 * with ", " and ": " separators; floats as repr(); key order as in the file,
 * which maskbench reordered to follow the schema's `properties`). Unlike
 * that runner, which stops after the last token, a valid instance must also
 * leave end-of-generation allowed (sgl check's rule).
 *
 * Usage: maskbench [--bytes] [--model M] [--verbose] [DIR [NAME-SUBSTRING]]
 *   DIR: the unpacked data/ folder (default /tmp/data; `make maskbench`
 *   unpacks the shared tarball). --bytes judges the serialized bytes with
 *   cg_match instead of tokens. Prints the number passing of all files, the
 *   invalid instances accepted (must be 0) and the most common refusals.
 * Reads the schema files with the room's JSON reader (constrain/jdoc.h),
 * which keeps number texts and key order.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "constrain/constrain.h"
#include "constrain/jdoc.h"
#include "runtime/gguf.h"
#include "runtime/tokenizer.h"

typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static void put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s) abort();
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void puts_(Buf *b, const char *s) { put(b, s, strlen(s)); }

/* repr(float) as Python writes it. */
static void py_float(Buf *b, const char *text) {
    double x = strtod(text, NULL);
    char tmp[64];
    if (isinf(x)) {
        puts_(b, x < 0 ? "-Infinity" : "Infinity");
        return;
    }
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    /* tmp = [-]d[.ddd]e[+-]XX */
    char digits[32];
    int nd = 0;
    const char *q = tmp;
    bool neg = *q == '-';
    if (neg) q++;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    int e10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    if (neg) puts_(b, "-");
    if (e10 >= -5 + 1 && e10 < 16) {
        if (e10 < 0) {
            puts_(b, "0.");
            for (int i = 0; i < -e10 - 1; i++) puts_(b, "0");
            put(b, digits, (size_t)nd);
        } else {
            for (int i = 0; i <= e10; i++) put(b, i < nd ? &digits[i] : "0", 1);
            puts_(b, ".");
            if (nd > e10 + 1) put(b, digits + e10 + 1, (size_t)(nd - e10 - 1));
            else puts_(b, "0");
        }
    } else {
        put(b, digits, 1);
        if (nd > 1) {
            puts_(b, ".");
            put(b, digits + 1, (size_t)(nd - 1));
        }
        char ex[16];
        snprintf(ex, sizeof ex, "e%c%02d", e10 < 0 ? '-' : '+', e10 < 0 ? -e10 : e10);
        puts_(b, ex);
    }
}

static void py_string(Buf *b, const char *s, size_t n) {
    puts_(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e[8];
        switch (c) {
        case '"': puts_(b, "\\\""); break;
        case '\\': puts_(b, "\\\\"); break;
        case '\n': puts_(b, "\\n"); break;
        case '\r': puts_(b, "\\r"); break;
        case '\t': puts_(b, "\\t"); break;
        case '\b': puts_(b, "\\b"); break;
        case '\f': puts_(b, "\\f"); break;
        default:
            if (c < 0x20) {
                snprintf(e, sizeof e, "\\u%04x", c);
                puts_(b, e);
            } else {
                put(b, (const char *)&s[i], 1);
            }
        }
    }
    puts_(b, "\"");
}

/* json.dumps(v) (python = true) or the value with number texts verbatim. */
static void dump(Buf *b, const JdValue *v, bool python) {
    switch (v->kind) {
    case JD_NULL: puts_(b, "null"); break;
    case JD_TRUE: puts_(b, "true"); break;
    case JD_FALSE: puts_(b, "false"); break;
    case JD_NUMBER:
        if (!python) puts_(b, v->str);
        else if (v->is_int) puts_(b, strcmp(v->str, "-0") == 0 ? "0" : v->str);
        else py_float(b, v->str);
        break;
    case JD_STRING: py_string(b, v->str, v->len); break;
    case JD_ARRAY:
        puts_(b, "[");
        for (int i = 0; i < v->n; i++) {
            if (i) puts_(b, ", ");
            dump(b, v->items[i], python);
        }
        puts_(b, "]");
        break;
    case JD_OBJECT:
        puts_(b, "{");
        for (int i = 0; i < v->n; i++) {
            if (i) puts_(b, ", ");
            py_string(b, v->keys[i], v->key_lens[i]);
            puts_(b, ": ");
            dump(b, v->items[i], python);
        }
        puts_(b, "}");
        break;
    }
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)sz + 1);
    if (s && fread(s, 1, (size_t)sz, f) != (size_t)sz) {
        free(s);
        s = NULL;
    }
    fclose(f);
    if (s) {
        s[sz] = 0;
        *n = (size_t)sz;
    }
    return s;
}

/* ---- refusal reasons ---------------------------------------------------- */

typedef struct {
    char *key;
    int count;
    char example[128];
} Reason;

static Reason reasons[4096];
static int nreasons;

static void add_reason(const char *msg, const char *file) {
    char key[120];
    size_t k = 0;
    for (const char *p = msg; *p && k + 1 < sizeof key; p++) {
        if (*p >= '0' && *p <= '9') {
            if (k == 0 || key[k - 1] != 'N') key[k++] = 'N';
            continue;
        }
        if (*p == '(' && k > 20) break;
        key[k++] = *p;
    }
    key[k] = 0;
    /* quoted pattern texts vary: keep the words */
    if (strncmp(key, "pattern: ", 9) == 0 || strncmp(key, "patternProperties: pattern", 26) == 0) {
        char *at = strstr(key, " (at");
        if (at) *at = 0;
    }
    for (int i = 0; i < nreasons; i++)
        if (!strcmp(reasons[i].key, key)) {
            reasons[i].count++;
            return;
        }
    if (nreasons < 4096) {
        reasons[nreasons].key = strdup(key);
        reasons[nreasons].count = 1;
        snprintf(reasons[nreasons].example, sizeof reasons[nreasons].example, "%s", file);
        nreasons++;
    }
}

static int by_count(const void *a, const void *b) {
    return ((const Reason *)b)->count - ((const Reason *)a)->count;
}

static int name_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    const char *dir = "/tmp/data", *filter = NULL;
    const char *model = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    bool bytes = false, verbose = false;
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--bytes")) bytes = true;
        else if (!strcmp(argv[i], "--verbose")) verbose = true;
        else if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (pos == 0) dir = argv[i], pos++;
        else filter = argv[i];
    }
    Tokenizer *tok = NULL;
    CVocab *vocab = NULL;
    if (!bytes) {
        char err[256];
        GgufFile *f = gguf_open(model, err, sizeof err);
        if (!f) {
            fprintf(stderr, "maskbench: %s: %s\n", model, err);
            return 2;
        }
        int rc = tok_load_gguf(f, &tok, err, sizeof err);
        gguf_close(f);
        if (rc < 0) {
            fprintf(stderr, "maskbench: %s\n", err);
            return 2;
        }
        int32_t n = tok_vocab_size(tok);
        const char **bs = malloc((size_t)n * sizeof *bs);
        size_t *lens = malloc((size_t)n * sizeof *lens);
        uint8_t *flags = malloc((size_t)n);
        for (int32_t i = 0; i < n; i++) {
            bs[i] = tok_token_piece(tok, i, &lens[i]);
            flags[i] = (uint8_t)((tok_is_special(tok, i) ? CV_SPECIAL : 0) | (tok_is_eog(tok, i) ? CV_EOG : 0));
        }
        rc = cv_new(n, bs, lens, flags, &vocab);
        free(bs);
        free(lens);
        free(flags);
        if (rc < 0) {
            fprintf(stderr, "maskbench: cv_new failed\n");
            return 2;
        }
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "maskbench: cannot open %s\n", dir);
        return 2;
    }
    char **names = NULL;
    int nnames = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json")) continue;
        if (filter && !strstr(de->d_name, filter)) continue;
        if (nnames == cap) {
            cap = cap ? cap * 2 : 1024;
            names = realloc(names, (size_t)cap * sizeof *names);
        }
        names[nnames++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)nnames, sizeof *names, name_cmp);

    int passing = 0, compiled = 0, invalid_accepted = 0, valid_rejected = 0, ntests = 0, tests_right = 0;
    long ntokens = 0;
    uint32_t *mask = vocab ? malloc(cv_mask_words(vocab) * sizeof *mask) : NULL;
    TokIds ids = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int fi = 0; fi < nnames; fi++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[fi]);
        size_t n;
        char *text = read_file(path, &n);
        JdValue *doc;
        char err[512];
        if (!text || jd_parse(text, n, 0, &doc, err, sizeof err)) {
            fprintf(stderr, "maskbench: %s: unreadable\n", names[fi]);
            free(text);
            continue;
        }
        free(text);
        const JdValue *schema = jd_get(doc, "schema"), *tests = jd_get(doc, "tests");
        Buf sb = {0};
        dump(&sb, schema, false);
        CGrammar *g = NULL;
        CgLimits lim = {0};
        int rc = cg_compile_json(sb.s, sb.n, NULL, &lim, &g, err, sizeof err);
        free(sb.s);
        if (rc) {
            add_reason(err, names[fi]);
            if (verbose) printf("REFUSED %s: %s\n", names[fi], err);
            jd_free(doc);
            continue;
        }
        compiled++;
        bool all_right = true;
        for (int ti = 0; tests && ti < tests->n; ti++) {
            const JdValue *t = tests->items[ti];
            const JdValue *valid = jd_get(t, "valid"), *data = jd_get(t, "data");
            if (!valid || !data) continue;
            Buf ib = {0};
            dump(&ib, data, true);
            bool accepted;
            size_t bad_at = 0;
            if (bytes) {
                accepted = cg_match(g, ib.s, ib.n, NULL) == 1;
            } else {
                ids.n = 0;
                accepted = false;
                if (tok_encode(tok, ib.s, ib.n, 0, &ids) == 0) {
                    CMatcher *m;
                    if (cm_new(g, vocab, &m) == 0) {
                        accepted = true;
                        size_t at = 0;
                        for (size_t k = 0; k < ids.n; k++) {
                            int32_t id = ids.ids[k];
                            int allowed = cm_fill_mask(m, mask);
                            ntokens++;
                            if (allowed < 0 || !((mask[id >> 5] >> (id & 31)) & 1) || cm_accept_token(m, id) < 0) {
                                accepted = false;
                                bad_at = at;
                                break;
                            }
                            size_t pl;
                            tok_token_piece(tok, id, &pl);
                            at += pl;
                        }
                        if (accepted) accepted = cm_can_end(m);
                        cm_free(m);
                    }
                }
            }
            ntests++;
            bool want = valid->kind == JD_TRUE;
            if (accepted == want) {
                tests_right++;
            } else {
                all_right = false;
                if (accepted) {
                    invalid_accepted++;
                    printf("INVALID ACCEPTED %s test %d: %s\n", names[fi], ti, ib.s);
                } else {
                    valid_rejected++;
                    if (verbose) printf("VALID REJECTED %s test %d at byte %zu: %.300s\n", names[fi], ti, bad_at, ib.s);
                }
            }
            free(ib.s);
        }
        if (all_right) passing++;
        cg_unref(g);
        jd_free(doc);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("maskbench (%s): %d of %d schemas pass; %d compile; tests right %d of %d; "
           "invalid accepted %d; valid rejected %d; %ld tokens; %.1f s\n",
           bytes ? "bytes" : "tokens", passing, nnames, compiled, tests_right, ntests, invalid_accepted,
           valid_rejected, ntokens, secs);
    qsort(reasons, (size_t)nreasons, sizeof *reasons, by_count);
    printf("refusals (most common):\n");
    for (int i = 0; i < nreasons && i < 30; i++) printf("%6d  %s   [e.g. %s]\n", reasons[i].count, reasons[i].key, reasons[i].example);
    tok_ids_free(&ids);
    free(mask);
    if (vocab) cv_unref(vocab);
    if (tok) tok_free(tok);
    for (int i = 0; i < nnames; i++) free(names[i]);
    free(names);
    return invalid_accepted ? 1 : 0;
}
