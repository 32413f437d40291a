/*
 * tests/unit/test_constrained.c — structured generation on the default
 * model through the engine: every output satisfies its constraint (regexes
 * checked by PCRE2, JSON by Python's jsonschema with format checks, GBNF by
 * the grammar's recognizer), 32 requests with different schemas in one
 * batch, greedy outputs identical with jump-forward on and off, and a bad
 * constraint failing only its own request.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <criterion/criterion.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/constrain.h"
#include "engine_helper.h"
#include "runtime/rt_constrain.h"

static Model *model;
static Tokenizer *tok;

static void setup(void) { engine_model_load(&model, &tok); }
static void teardown(void) { engine_model_free(&model, &tok); }

typedef struct {
    int done, status;
    EngFinish finish;
    char text[8192];
    size_t len;
} Out;

static void on_done(void *ud, const EngResult *r)
{
    Out *o = ud;
    o->done = 1;
    o->status = r->status;
    o->finish = r->finish;
    o->len = r->len < sizeof o->text - 1 ? r->len : sizeof o->text - 1;
    memcpy(o->text, r->text, o->len);
    o->text[o->len] = 0;
}

static Engine *engine_with(int jump_forward, int mask_overlap)
{
    EngOptions eo;
    eng_options_default(&eo);
    eo.n_threads = THREADS;
    eo.jump_forward = jump_forward;
    eo.mask_overlap = mask_overlap;
    char err[256];
    Engine *e = eng_new(model, tok, &eo, err, sizeof err);
    cr_assert_not_null(e, "%s", err);
    return e;
}

static Engine *engine(int jump_forward) { return engine_with(jump_forward, 1); }

static CGrammar *compile(RtConstraintKind kind, const char *src)
{
    CGrammar *g = NULL;
    char err[512];
    int rc = rtc_compile(kind, src, strlen(src), &g, err, sizeof err);
    cr_assert_eq(rc, 0, "compile %s: %s", src, err);
    return g;
}

static void submit(Engine *e, const char *prompt, CGrammar *g, double temp, uint64_t seed, int max_tokens, Out *o)
{
    EngGenParams p;
    eng_gen_params_default(&p);
    p.prompt_text = prompt;
    p.prompt_len = strlen(prompt);
    p.sampling.temperature = temp;
    p.sampling.has_seed = 1;
    p.sampling.seed = seed;
    p.sampling.max_tokens = max_tokens;
    p.constraint = g;
    p.on_done = on_done;
    p.ud = o;
    cr_assert_eq(eng_submit(e, &p, NULL), 0, "eng_submit: %s", eng_last_error(e));
}

static void wait_all(Engine *e, Out *o, int n)
{
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++) all &= o[i].done;
        if (all) return;
        cr_assert_geq(eng_wait(e), 0);
    }
}

/* A finished output must be in the language; one cut by max_tokens must be
 * a prefix of a string in it. */
static void check_shape(CGrammar *g, const Out *o, const char *what)
{
    cr_assert_eq(o->status, 0, "%s: status %d", what, o->status);
    bool prefix = false;
    int full = cg_match(g, o->text, o->len, &prefix);
    if (o->finish == ENG_FINISH_LENGTH) cr_assert(prefix, "%s: cut output is no prefix: %s", what, o->text);
    else cr_assert_eq(full, 1, "%s: output not in the language: [%s]", what, o->text);
}

static int pcre_full(const char *re, const char *s, size_t n)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED,
                                  &ec, &eo, NULL);
    cr_assert_not_null(c, "pcre2 cannot compile %s", re);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(c, NULL);
    int rc = pcre2_match(c, (PCRE2_SPTR)s, n, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(c);
    return rc >= 0;
}

static const char *regexes[] = {
    "(19|20)\\d\\d",
    "[A-Z][a-z]+",
    "(yes|no)",
    "\\d{3}-\\d{4}",
    "[a-z]+@[a-z]+\\.(com|org)",
    "#[0-9a-f]{6}",
    "(Monday|Tuesday|Wednesday|Thursday|Friday)",
    "\\d+(\\.\\d+)?",
    "[A-Z]{2,3}",
    "(The answer is )?(42|forty-two)\\.",
    "https?://[a-z]+\\.[a-z]{2,3}(/[a-z]*)?",
    "\\(\\d{3}\\) \\d{3}-\\d{4}",
    "[a-z]+( [a-z]+){2}",
    "-?\\d{1,3}",
    "(red|green|blue), (red|green|blue)",
    "\\w+\\s\\w+",
    "\\[\"[a-z]+\"(, \"[a-z]+\")*\\]",
    "[0-9a-f]{8}-[0-9a-f]{4}",
    "caf\u00e9|na\u00efve|\u00fcber",
    "\\d\\d:\\d\\d",
};
#define NRX (int)(sizeof regexes / sizeof *regexes)

Test(constrained, regexes, .init = setup, .fini = teardown, .timeout = 300)
{
    Engine *e = engine(1);
    static Out o[NRX * 2];
    memset(o, 0, sizeof o);
    CGrammar *g[NRX];
    for (int i = 0; i < NRX; i++) {
        g[i] = compile(RT_CONSTRAINT_REGEX, regexes[i]);
        char prompt[256];
        snprintf(prompt, sizeof prompt, "Write a string that matches the pattern %s: ", regexes[i]);
        submit(e, prompt, g[i], 0, 1, 48, &o[2 * i]);
        submit(e, prompt, g[i], 0.9, 100 + (uint64_t)i, 48, &o[2 * i + 1]);
    }
    wait_all(e, o, NRX * 2);
    int finished = 0;
    for (int i = 0; i < NRX * 2; i++) {
        check_shape(g[i / 2], &o[i], regexes[i / 2]);
        if (o[i].finish != ENG_FINISH_LENGTH) {
            finished++;
            cr_assert(pcre_full(regexes[i / 2], o[i].text, o[i].len), "PCRE2 rejects [%s] for %s", o[i].text,
                      regexes[i / 2]);
        }
    }
    cr_assert_geq(finished, NRX, "most constrained outputs should complete (%d of %d)", finished, NRX * 2);
    for (int i = 0; i < NRX; i++) cg_unref(g[i]);
    eng_free(e);
}

/* 32 schemas, each its own request, all in one batch (sampled): every
 * complete output must validate under Python's jsonschema. */
static const char *schemas[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":120}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}",
    "{\"type\":\"integer\",\"minimum\":10,\"maximum\":99}",
    "{\"type\":\"boolean\"}",
    "{\"enum\":[\"red\",\"green\",\"blue\"]}",
    "{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":5},\"minItems\":2,\"maxItems\":4}",
    "{\"type\":\"string\",\"format\":\"date\"}",
    "{\"type\":\"string\",\"format\":\"uuid\"}",
    "{\"type\":\"string\",\"format\":\"ipv4\"}",
    "{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-\\\\d{2}$\"}",
    "{\"type\":\"number\",\"minimum\":0.5,\"exclusiveMaximum\":2}",
    "{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"}},\"required\":[\"ok\"],\"additionalProperties\":false}",
    "{\"const\":{\"kind\":\"point\",\"x\":1}}",
    "{\"anyOf\":[{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},{\"type\":\"string\",\"maxLength\":3}]}",
    "{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":8},\"maxItems\":3}},\"required\":[\"tags\"],\"additionalProperties\":false}",
    "{\"type\":\"string\",\"minLength\":2,\"maxLength\":5}",
    "{\"type\":\"integer\",\"minimum\":-1000,\"maximum\":-100}",
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":15},\"country\":{\"enum\":[\"FR\",\"IT\",\"DE\"]}},\"required\":[\"city\",\"country\"],\"additionalProperties\":false}",
    "{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\",\"maxLength\":6},{\"type\":\"integer\",\"minimum\":1,\"maximum\":3}],\"items\":false}",
    "{\"type\":\"string\",\"format\":\"time\"}",
    "{\"type\":\"string\",\"format\":\"email\",\"maxLength\":30}",
    "{\"type\":\"null\"}",
    "{\"type\":[\"integer\",\"null\"],\"maximum\":5,\"minimum\":0}",
    "{\"$defs\":{\"leaf\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9}},\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/leaf\"},\"b\":{\"$ref\":\"#/$defs/leaf\"}},\"required\":[\"a\",\"b\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":999},\"done\":{\"type\":\"boolean\"}},\"required\":[\"id\"],\"additionalProperties\":false}",
    "{\"type\":\"number\",\"multipleOf\":0.01,\"minimum\":0,\"maximum\":10}",
    "{\"type\":\"string\",\"enum\":[\"small\",\"medium\",\"large\"]}",
    "{\"type\":\"array\",\"items\":{\"enum\":[1,2,3]},\"maxItems\":5}",
    "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"number\",\"minimum\":-1,\"maximum\":1},\"y\":{\"type\":\"number\",\"minimum\":-1,\"maximum\":1}},\"required\":[\"x\",\"y\"],\"additionalProperties\":false}",
    "{\"type\":\"string\",\"format\":\"date-time\"}",
    "{\"oneOf\":[{\"type\":\"boolean\"},{\"type\":\"null\"}]}",
    "{\"type\":\"object\",\"properties\":{\"user\":{\"type\":\"object\",\"properties\":{\"first\":{\"type\":\"string\",\"maxLength\":10}},\"required\":[\"first\"],\"additionalProperties\":false}},\"required\":[\"user\"],\"additionalProperties\":false}",
    "{\"type\":\"string\",\"pattern\":\"^(cat|dog)s?$\"}",
};
#define NSCH (int)(sizeof schemas / sizeof *schemas)

static void put_escaped(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\') fputs("\\\\", f);
        else if (s[i] == '\n') fputs("\\x0a", f);
        else if (s[i] == '\t') fputs("\\x09", f);
        else fputc(s[i], f);
    }
}

Test(constrained, schemas_in_one_batch, .init = setup, .fini = teardown, .timeout = 300)
{
    cr_assert_eq(NSCH, 32);
    Engine *e = engine(1);
    static Out o[NSCH];
    memset(o, 0, sizeof o);
    CGrammar *g[NSCH];
    for (int i = 0; i < NSCH; i++) {
        g[i] = compile(RT_CONSTRAINT_JSON, schemas[i]);
        char prompt[1024];
        snprintf(prompt, sizeof prompt, "Give a JSON value valid under the schema %s\nJSON: ", schemas[i]);
        submit(e, prompt, g[i], 0.8, 7 + (uint64_t)i, 96, &o[i]);
    }
    wait_all(e, o, NSCH);
    const char *sp = "build/tests/constrained_schemas.txt", *wp = "build/tests/constrained_outputs.txt";
    FILE *fs = fopen(sp, "w"), *fw = fopen(wp, "w");
    cr_assert(fs && fw);
    int complete = 0;
    for (int i = 0; i < NSCH; i++) {
        check_shape(g[i], &o[i], schemas[i]);
        fprintf(fs, "%s\n", schemas[i]);
        if (o[i].finish == ENG_FINISH_LENGTH) continue;
        complete++;
        fprintf(fw, "%d\t", i);
        put_escaped(fw, o[i].text, o[i].len);
        fputc('\n', fw);
    }
    fclose(fs);
    fclose(fw);
    cr_assert_geq(complete, NSCH / 2, "only %d of %d outputs complete", complete, NSCH);
    if (access("build/venv/bin/python", X_OK) != 0) cr_skip_test("no build/venv (make venv) for the jsonschema check");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "build/venv/bin/python tests/tools/schema_validate.py %s %s", sp, wp);
    cr_assert_eq(system(cmd), 0, "jsonschema rejected an output (see above)");
    for (int i = 0; i < NSCH; i++) cg_unref(g[i]);
    eng_free(e);
}

static const char *grammars[] = {
    "root ::= expr\nexpr ::= term ((\"+\" | \"-\") term)*\nterm ::= [0-9]+ | \"(\" expr \")\"\n",
    "root ::= \"SELECT \" cols \" FROM \" name \";\"\ncols ::= name (\", \" name)*\nname ::= [a-z]{1,8}\n",
    "root ::= item (\"\\n\" item){0,2}\nitem ::= \"- \" [A-Za-z ]{1,20}\n",
    "root ::= (\"yes\" | \"no\") \" because \" [a-z ]{1,30} \".\"\n",
    "root ::= list\nlist ::= \"[\" (value (\",\" value)*)? \"]\"\nvalue ::= [0-9] | list\n",
};
#define NGR (int)(sizeof grammars / sizeof *grammars)

Test(constrained, grammars, .init = setup, .fini = teardown, .timeout = 300)
{
    Engine *e = engine(1);
    static Out o[NGR * 2];
    memset(o, 0, sizeof o);
    CGrammar *g[NGR];
    for (int i = 0; i < NGR; i++) {
        g[i] = compile(RT_CONSTRAINT_GRAMMAR, grammars[i]);
        submit(e, "Answer in the required format.\n", g[i], 0, 1, 48, &o[2 * i]);
        submit(e, "Answer in the required format.\n", g[i], 1.0, 50 + (uint64_t)i, 48, &o[2 * i + 1]);
    }
    wait_all(e, o, NGR * 2);
    for (int i = 0; i < NGR * 2; i++) check_shape(g[i / 2], &o[i], grammars[i / 2]);
    for (int i = 0; i < NGR; i++) cg_unref(g[i]);
    eng_free(e);
}

/* Greedy outputs are the same with jump-forward on and off, and on it
 * really jumps. */
Test(constrained, jump_forward_same_greedy, .init = setup, .fini = teardown, .timeout = 300)
{
    static const char *srcs[] = {
        "{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"geometry.point.2d\"},\"coordinates\":{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},\"minItems\":2,\"maxItems\":2}},\"required\":[\"kind\",\"coordinates\"],\"additionalProperties\":false}",
        "{\"enum\":[\"internationalization\",\"localization\"]}",
        "{\"type\":\"object\",\"properties\":{\"description_of_the_weather\":{\"type\":\"string\",\"maxLength\":20}},\"required\":[\"description_of_the_weather\"],\"additionalProperties\":false}",
    };
    enum { N = 3 };
    Out a[N], b[N];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    uint64_t forced[2];
    for (int jf = 0; jf < 2; jf++) {
        Engine *e = engine(jf);
        Out *o = jf ? b : a;
        for (int i = 0; i < N; i++) {
            CGrammar *g = compile(RT_CONSTRAINT_JSON, srcs[i]);
            submit(e, "JSON: ", g, 0, 1, 64, &o[i]);
            cg_unref(g);
        }
        wait_all(e, o, N);
        EngStats st;
        eng_stats(e, &st);
        forced[jf] = st.forced_tokens;
        eng_free(e);
    }
    for (int i = 0; i < N; i++) cr_assert_str_eq(a[i].text, b[i].text, "jump-forward changed a greedy output");
    cr_assert_eq(forced[0], 0);
    cr_assert_gt(forced[1], 0, "jump-forward never jumped");
}

/* any_whitespace: JSON with newlines and indentation is in the language
 * only with the flag; other kinds refuse the flag by name. */
Test(constrained, any_whitespace_flag)
{
    const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\"}},\"required\":[\"a\"]}";
    const char *pretty = "{\n  \"a\" : [\n\t1,\r\n 2 ]\n}";
    const char *dumps = "{\"a\": [1, 2]}";
    CGrammar *tight = NULL, *loose = NULL, *g = NULL;
    char err[256];
    cr_assert_eq(rtc_compile_flags(RT_CONSTRAINT_JSON, schema, strlen(schema), 0, &tight, err, sizeof err), 0, "%s", err);
    cr_assert_eq(rtc_compile_flags(RT_CONSTRAINT_JSON, schema, strlen(schema), RTC_ANY_WHITESPACE, &loose, err,
                                   sizeof err), 0, "%s", err);
    cr_assert(cg_match(loose, pretty, strlen(pretty), NULL));
    cr_assert(cg_match(loose, dumps, strlen(dumps), NULL));
    cr_assert(!cg_match(tight, pretty, strlen(pretty), NULL));
    cr_assert(cg_match(tight, dumps, strlen(dumps), NULL));
    cr_assert_neq(rtc_compile_flags(RT_CONSTRAINT_REGEX, "a+", 2, RTC_ANY_WHITESPACE, &g, err, sizeof err), 0);
    cr_assert_null(g);
    cr_assert(strstr(err, "any_whitespace"), "%s", err);
    cg_unref(tight);
    cg_unref(loose);
}

/* Masks computed on the mask thread during the forward pass are the masks
 * computed inline after it: greedy and seeded outputs are the same. */
Test(constrained, mask_overlap_same_outputs, .init = setup, .fini = teardown, .timeout = 300)
{
    enum { N = 8 };
    Out a[N], b[N];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    for (int ov = 0; ov < 2; ov++) {
        Engine *e = engine_with(1, ov);
        Out *o = ov ? b : a;
        for (int i = 0; i < N; i++) {
            CGrammar *g = compile(RT_CONSTRAINT_REGEX, regexes[i]);
            submit(e, "Answer: ", g, i % 2 ? 0.8 : 0, 7 + (uint64_t)i, 24, &o[i]);
            cg_unref(g);
        }
        wait_all(e, o, N);
        eng_free(e);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(a[i].status, 0);
        cr_assert_str_eq(a[i].text, b[i].text, "the mask thread changed output %d", i);
    }
}

/* A constraint the mask cannot satisfy is refused before it reaches the
 * engine; the engine keeps serving the others. */
Test(constrained, bad_constraints_refused_by_name)
{
    CGrammar *g = NULL;
    char err[512];
    cr_assert_neq(rtc_compile(RT_CONSTRAINT_REGEX, "(a)\\1", 5, &g, err, sizeof err), 0);
    cr_assert(strstr(err, "backreference"), "%s", err);
    const char *s = "{\"if\":{\"type\":\"string\"},\"then\":{\"maxLength\":2}}";
    int rc = rtc_compile(RT_CONSTRAINT_JSON, s, strlen(s), &g, err, sizeof err);
    cr_assert_neq(rc, 0, "a keyword it does not enforce must not be ignored");
    cr_assert(strstr(err, "\"if\""), "%s", err);
    const char *gb = "root ::= missing\n";
    cr_assert_neq(rtc_compile(RT_CONSTRAINT_GRAMMAR, gb, strlen(gb), &g, err, sizeof err), 0);
    cr_assert(strstr(err, "missing"), "%s", err);
}
