/* tests/unit/test_gen_options.c — runtime/gen_options.h, the one list of
 * gen()'s options: the defaults rt_gen_params_default gives are the
 * table's, names are unique in each naming, and LANGUAGE.md §6 documents
 * every option the table declares. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gen_options.h"
#include "runtime/rt.h"

Test(gen_options, defaults_are_the_tables)
{
    RtGenParams p;
    memset(&p, 0x5a, sizeof p);
    rt_gen_params_default(&p);
    int checked = 0;
#define CHECK_INT(name, dflt) { cr_expect_eq(p.name, (int)(dflt), #name); checked++; }
#define CHECK_NUM(name, dflt) { cr_expect_eq(p.name, (double)(dflt), #name); checked++; }
#define CHECK_NUM_GT CHECK_NUM
#define CHECK_BOOL CHECK_INT
#define CHECK_OTHER(name, dflt)
#define CHECK_SEED CHECK_OTHER
#define CHECK_NAME CHECK_OTHER
#define CHECK_STOP CHECK_OTHER
#define CHECK_STOP_IDS CHECK_OTHER
#define CHECK_REGEX CHECK_OTHER
#define CHECK_JSON CHECK_OTHER
#define CHECK_GRAMMAR CHECK_OTHER
#define CHECK_CHOICES CHECK_OTHER
#define CHECK_TYPE CHECK_OTHER
#define CHECK(name, kind, lo, hi, dflt, openai, sglang) CHECK_##kind(name, dflt)
    RT_GEN_OPTIONS(CHECK)
#undef CHECK
    cr_expect_gt(checked, 10);
    /* the kinds without a default are "none" */
    cr_expect_eq(p.has_seed, 0);
    cr_expect_eq(p.nstop, 0);
    cr_expect_null(p.stop);
    cr_expect_eq(p.nstop_token_ids, 0);
    cr_expect_eq(p.constraint, RT_CONSTRAINT_NONE);
    cr_expect_null(p.constraint_src);
    /* LANGUAGE.md §6's numbers */
    cr_expect_eq(p.max_tokens, 128);
    cr_expect_eq(p.top_k, -1);
    cr_expect_eq(p.repetition_penalty, 1.0);
}

static void expect_unique(const char *what, const char *(*get)(int))
{
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++)
        for (int j = i + 1; j < RT_GEN_OPTION_COUNT; j++)
            if (get(i) && get(j)) cr_expect_str_neq(get(i), get(j), "%s name %s twice", what, get(i));
}

static const char *sgl_name(int i) { return rt_gen_options[i].name; }
static const char *openai_name(int i) { return rt_gen_options[i].openai; }
static const char *sglang_name(int i) { return rt_gen_options[i].sglang; }

Test(gen_options, names_are_unique_and_found)
{
    expect_unique("SGL", sgl_name);
    expect_unique("OpenAI", openai_name);
    expect_unique("SGLang", sglang_name);
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++) cr_expect_eq(rt_gen_option_find(rt_gen_options[i].name), i);
    cr_expect_eq(rt_gen_option_find("max_tokns"), -1);
    cr_expect_eq(rt_gen_option_find("max_new_tokens"), -1);   /* SGLang's name is not the language's */
    cr_expect_str_eq(rt_gen_options[RT_GEN_OPT_max_tokens].sglang, "max_new_tokens");
    cr_expect_str_eq(rt_gen_options[RT_GEN_OPT_grammar].sglang, "ebnf");
    cr_expect_str_eq(rt_gen_options[RT_GEN_OPT_json].sglang, "json_schema");
    cr_expect_str_eq(rt_gen_options[RT_GEN_OPT_max_tokens].openai, "max_tokens");
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

Test(gen_options, language_reference_documents_every_option)
{
    char *doc = read_all("lang/LANGUAGE.md");
    char *start = strstr(doc, "## 6. Model calls"), *end = start ? strstr(start, "## 7.") : NULL;
    cr_assert(start && end, "LANGUAGE.md has no §6");
    *end = '\0';
    char want[64];
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++) {
        snprintf(want, sizeof want, "`%s`", rt_gen_options[i].name);
        cr_expect(strstr(start, want) != NULL, "LANGUAGE.md §6 does not mention %s", want);
    }
    /* the one-constraint rule names the constraint kinds, in table order */
    char rule[256] = "At most one of ";
    int n = 0;
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++) {
        if (!rt_gen_kind_is_constraint(rt_gen_options[i].kind)) continue;
        snprintf(rule + strlen(rule), sizeof rule - strlen(rule), "%s`%s`", n++ ? ", " : "", rt_gen_options[i].name);
    }
    cr_expect(strstr(start, rule) != NULL, "LANGUAGE.md §6 lacks: %s", rule);
    free(doc);
}
