/* tests/unit/test_constrain_schema.c — JSON Schema → grammar
 * (constrain/schema*.c): per keyword, texts accepted and rejected at the
 * byte level (cg_match); refusals name their keyword; integer and decimal
 * bounds swept against exact arithmetic; formats; and soundness against an
 * independent validator (Python `jsonschema` with format checks, in the
 * venv `make test` creates) over random walks through the grammars. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "constrain/constrain.h"

static CGrammar *compile_opt(const char *schema, const CgJsonOptions *opt) {
    CGrammar *g = NULL;
    char err[512] = "";
    int rc = cg_compile_json(schema, strlen(schema), opt, NULL, &g, err, sizeof err);
    cr_assert_eq(rc, 0, "schema %s: %s (%d)", schema, err, rc);
    return g;
}

static CGrammar *compile(const char *schema) { return compile_opt(schema, NULL); }

static bool matches(const CGrammar *g, const char *text) { return cg_match(g, text, strlen(text), NULL) == 1; }

/* Every text in yes is accepted, every one in no rejected. */
static void check(const char *schema, const char *const *yes, const char *const *no) {
    CGrammar *g = compile(schema);
    for (; yes && *yes; yes++) cr_expect(matches(g, *yes), "%s should accept %s", schema, *yes);
    for (; no && *no; no++) cr_expect(!matches(g, *no), "%s should reject %s", schema, *no);
    cg_unref(g);
}

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static void refused(const char *schema, int code, const char *words) {
    CGrammar *g = NULL;
    char err[512] = "";
    int rc = cg_compile_json(schema, strlen(schema), NULL, NULL, &g, err, sizeof err);
    cr_expect_eq(rc, code, "schema %s: rc %d (%s), want %d", schema, rc, err, code);
    cr_expect(strstr(err, words) != NULL, "schema %s: message \"%s\" should name \"%s\"", schema, err, words);
    cr_expect_null(g);
}

Test(schema, types) {
    check("{\"type\": \"null\"}", L("null"), L("nul", "true", "0", "\"null\""));
    check("{\"type\": \"boolean\"}", L("true", "false"), L("null", "1", "\"true\""));
    check("{\"type\": \"integer\"}", L("0", "-1", "1234567890123456789012345"), L("1.0", "01", "-0", "1e3", "+1", "\"1\""));
    check("{\"type\": \"number\"}", L("0", "-1.5", "1e-7", "2.5E+10", "0.0"), L("01", ".5", "1.", "1e", "--1", "NaN"));
    check("{\"type\": \"string\"}", L("\"\"", "\"a\"", "\"\\\"\"", "\"\\n\"", "\"é\"", "\"\\u0001\""),
          L("\"\n\"", "'a'", "\"\\x\"", "\"a", "\"\\u0041\""));
    check("{\"type\": [\"string\", \"null\"]}", L("null", "\"x\""), L("1", "true"));
    check("{}", L("null", "1", "\"s\"", "[1, {\"a\": []}]", "{\"k\": [true]}"), L("", "[1,]", "{\"a\"}"));
    check("true", L("null", "[]"), L("nope"));
    refused("false", ERR_CONSTRAINT, "");
    refused("{\"type\": \"int\"}", ERR_CONSTRAINT, "type");
}

Test(schema, annotations_are_ignored) {
    check("{\"title\": \"T\", \"description\": \"d\", \"examples\": [1], \"default\": 2, \"$comment\": \"c\", "
          "\"deprecated\": true, \"readOnly\": true, \"x-custom\": {\"type\": \"null\"}, \"type\": \"integer\"}",
          L("3"), L("\"3\""));
}

Test(schema, objects) {
    const char *s = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"type\": \"string\"}, "
                    "\"c\": {\"type\": \"boolean\"}}, \"required\": [\"b\"], \"additionalProperties\": false}";
    check(s, L("{\"b\": \"x\"}", "{\"a\": 1, \"b\": \"x\"}", "{\"a\": 1, \"b\": \"x\", \"c\": true}", "{\"b\": \"x\", \"c\": false}",
               "{\"a\":1,\"b\":\"x\"}"),
          L("{}", "{\"a\": 1}", "{\"b\": \"x\", \"d\": 1}", "{\"b\": 1}", "{\"b\": \"x\",}", "{, \"b\": \"x\"}",
            "{\"b\": \"x\" , \"c\": true}", "{ \"b\": \"x\"}", "{\"b\":  \"x\"}"));
    /* additional members: any name but the declared ones */
    const char *t = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, "
                    "\"additionalProperties\": {\"type\": \"string\"}}";
    check(t, L("{}", "{\"a\": 1}", "{\"a\": 1, \"x\": \"y\"}", "{\"ab\": \"y\"}", "{\"\": \"y\", \"b\": \"z\"}"),
          L("{\"a\": \"s\"}", "{\"x\": 1}", "{\"a\": 1, \"a\": \"s\"}"));
    /* required names not declared take additionalProperties */
    check("{\"required\": [\"k\"], \"additionalProperties\": {\"type\": \"null\"}}", L("{\"k\": null}", "5"),
          L("{}", "{\"k\": 1}"));
    check("{\"type\": \"object\", \"patternProperties\": {\"^x-\": {\"type\": \"integer\"}}, \"additionalProperties\": false}",
          L("{}", "{\"x-a\": 1, \"x-\": 2}"), L("{\"y\": 1}", "{\"x-a\": \"s\"}"));
    check("{\"type\": \"object\", \"minProperties\": 1, \"properties\": {\"a\": {}}, \"required\": [\"a\"], "
          "\"additionalProperties\": false}",
          L("{\"a\": 1}"), L("{}"));
    check("{\"type\": \"object\", \"minProperties\": 1, \"properties\": {\"a\": {}, \"b\": {}}, \"additionalProperties\": false}",
          L("{\"a\": 1}", "{\"b\": 1}", "{\"a\": 1, \"b\": 2}"), L("{}"));
    check("{\"type\": \"object\", \"minProperties\": 1}", L("{\"z\": 1}"), L("{}"));
    /* patterns beside declared and additional members */
    check("{\"type\": \"object\", \"properties\": {\"xa\": {\"type\": \"string\"}, \"b\": {}}, "
          "\"patternProperties\": {\"^x\": {\"maxLength\": 1}, \"\\\\d\": {\"type\": \"string\"}}, "
          "\"additionalProperties\": {\"type\": \"null\"}}",
          L("{\"xa\": \"s\"}", "{\"xb\": 5}", "{\"x1\": \"s\"}", "{\"q\": null}", "{\"b\": 3, \"z9\": \"long\"}"),
          L("{\"xa\": \"long\"}", "{\"xa\": 1}", "{\"xb\": \"long\"}", "{\"x1\": 5}", "{\"q\": 1}", "{\"z9\": null}"));
    /* a pattern every name matches */
    check("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, \"patternProperties\": {\".*\": {\"minimum\": 2}}}",
          L("{\"a\": 2}", "{\"b\": 3}", "{\"b\": \"s\"}"), L("{\"a\": 1}", "{\"b\": 1}"));
    check("{\"type\": \"object\", \"patternProperties\": {\"^[a-z]+$\": {\"type\": \"integer\"}}, \"required\": [\"k\", \"K\"]}",
          L("{\"k\": 1, \"K\": \"s\"}", "{\"k\": 1, \"K\": 2, \"z\": 3, \"Z\": null}"), L("{\"k\": \"s\", \"K\": 1}", "{\"k\": 1, \"K\": 1, \"z\": null}"));
    refused("{\"type\": \"object\", \"minProperties\": 2}", ERR_UNSUPPORTED, "minProperties");
    refused("{\"type\": \"object\", \"maxProperties\": 2}", ERR_UNSUPPORTED, "maxProperties");
}

static char *repeated(const char *open, const char *unit, const char *sep, int n, const char *close) {
    size_t cap = strlen(open) + strlen(close) + (size_t)n * (strlen(unit) + strlen(sep)) + 1;
    char *s = malloc(cap);
    strcpy(s, open);
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, sep);
        strcat(s, unit);
    }
    strcat(s, close);
    return s;
}

Test(schema, counts_past_the_repeat_cap) {
    CGrammar *g = compile("{\"type\": \"string\", \"minLength\": 2500, \"maxLength\": 5000}");
    int ns[] = {2499, 2500, 3777, 4999, 5000, 5001};
    for (int i = 0; i < 6; i++) {
        char *t = repeated("\"", "é", "", ns[i], "\"");
        cr_expect_eq(matches(g, t), ns[i] >= 2500 && ns[i] <= 5000, "length %d", ns[i]);
        free(t);
    }
    cg_unref(g);
    g = compile("{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"maxItems\": 2000}");
    int ms[] = {0, 1, 1999, 2000, 2001};
    for (int i = 0; i < 5; i++) {
        char *t = repeated("[", "7", ", ", ms[i], "]");
        cr_expect_eq(matches(g, t), ms[i] <= 2000, "items %d", ms[i]);
        free(t);
    }
    cg_unref(g);
}

Test(schema, arrays) {
    check("{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"minItems\": 1, \"maxItems\": 3}",
          L("[1]", "[1, 2]", "[1,2, 3]"), L("[]", "[1, 2, 3, 4]", "[\"a\"]", "[1,]", "[ 1]"));
    check("{\"type\": \"array\", \"prefixItems\": [{\"type\": \"string\"}, {\"type\": \"null\"}], \"items\": false}",
          L("[]", "[\"a\"]", "[\"a\", null]"), L("[null]", "[\"a\", null, 1]"));
    check("{\"type\": \"array\", \"prefixItems\": [{\"type\": \"string\"}], \"items\": {\"type\": \"integer\"}, \"minItems\": 2}",
          L("[\"a\", 1]", "[\"a\", 1, 2]"), L("[\"a\"]", "[1, 1]", "[\"a\", \"b\"]"));
    /* draft-04 tuples */
    check("{\"$schema\": \"http://json-schema.org/draft-04/schema#\", \"items\": [{\"type\": \"integer\"}], "
          "\"additionalItems\": false}",
          L("[]", "[1]", "{}"), L("[1, 2]", "[\"a\"]"));
    check("{\"type\": \"array\", \"uniqueItems\": true, \"maxItems\": 1}", L("[]", "[1]"), L("[1, 2]"));
    refused("{\"type\": \"array\", \"uniqueItems\": true}", ERR_UNSUPPORTED, "uniqueItems");
    refused("{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}", ERR_CONSTRAINT, "minItems");
}

Test(schema, enum_and_const) {
    check("{\"enum\": [\"a\", 1, null, [1, \"x\"], {\"k\": true}]}",
          L("\"a\"", "1", "null", "[1, \"x\"]", "[1,\"x\"]", "{\"k\": true}"), L("\"b\"", "2", "[1]", "{}"));
    check("{\"type\": \"string\", \"enum\": [\"a\", 1, \"bb\"], \"maxLength\": 1}", L("\"a\""), L("1", "\"bb\""));
    check("{\"const\": \"q\\\"\"}", L("\"q\\\"\""), L("\"q\""));
    refused("{\"type\": \"integer\", \"enum\": [\"a\"]}", ERR_CONSTRAINT, "");
}

Test(schema, combinators) {
    check("{\"anyOf\": [{\"type\": \"integer\", \"minimum\": 10}, {\"type\": \"string\"}]}", L("10", "\"x\""), L("9", "null"));
    check("{\"oneOf\": [{\"type\": \"integer\"}, {\"type\": \"string\"}]}", L("1", "\"s\""), L("null"));
    check("{\"oneOf\": [{\"type\": \"object\", \"properties\": {\"k\": {\"const\": \"a\"}}, \"required\": [\"k\"]}, "
          "{\"type\": \"object\", \"properties\": {\"k\": {\"const\": \"b\"}, \"v\": {\"type\": \"integer\"}}, \"required\": [\"k\"]}]}",
          L("{\"k\": \"a\"}", "{\"k\": \"b\", \"v\": 1}"), L("{\"k\": \"c\"}"));
    refused("{\"oneOf\": [{\"type\": \"integer\"}, {\"type\": \"number\"}]}", ERR_UNSUPPORTED, "oneOf");
    check("{\"allOf\": [{\"type\": \"integer\", \"minimum\": 0}, {\"maximum\": 5}, {\"type\": [\"integer\", \"null\"]}]}",
          L("0", "5"), L("6", "-1", "null"));
    check("{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}}, \"allOf\": [{\"required\": [\"a\"]}, "
          "{\"properties\": {\"a\": {\"maximum\": 3}}}]}",
          L("{\"a\": 3}"), L("{}", "{\"a\": 4}"));
    check("{\"properties\": {\"a\": {}}, \"additionalProperties\": false, \"anyOf\": [{\"required\": [\"a\"]}, "
          "{\"type\": \"string\"}]}",
          L("{\"a\": 1}", "\"s\"", "1"), L("{}", "{\"b\": 1}"));
    /* dependencies: a present member needs others */
    check("{\"type\": \"object\", \"properties\": {\"a\": {}, \"b\": {}, \"c\": {}}, \"dependencies\": {\"a\": [\"b\"], "
          "\"c\": {\"required\": [\"a\"]}}}",
          L("{}", "{\"b\": 1}", "{\"a\": 1, \"b\": 2}", "{\"a\": 1, \"b\": 2, \"c\": 3}"),
          L("{\"a\": 1}", "{\"c\": 3}", "{\"b\": 1, \"c\": 3}"));
    check("{\"dependentRequired\": {\"x\": [\"y\"]}}", L("{\"y\": 1}", "{\"x\": 1, \"y\": 2}", "3"), L("{\"x\": 1}"));
    /* two anyOf lists (through allOf) and anyOf beside oneOf */
    check("{\"allOf\": [{\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"string\"}]}, "
          "{\"anyOf\": [{\"type\": \"integer\", \"minimum\": 5}, {\"type\": \"string\", \"maxLength\": 1}]}]}",
          L("5", "\"a\""), L("4", "null", "\"ab\""));
    check("{\"anyOf\": [{\"type\": \"integer\"}, {\"type\": \"string\"}], \"oneOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]}",
          L("\"a\""), L("4", "null"));
    refused("{\"not\": {\"type\": \"string\"}}", ERR_UNSUPPORTED, "\"not\"");
    refused("{\"if\": {\"type\": \"string\"}, \"then\": {\"minLength\": 1}}", ERR_UNSUPPORTED, "\"if\"");
    refused("{\"propertyNames\": {\"maxLength\": 3}}", ERR_UNSUPPORTED, "propertyNames");
    refused("{\"contains\": {\"type\": \"integer\"}}", ERR_UNSUPPORTED, "contains");
}

Test(schema, refs_and_recursion) {
    const char *tree = "{\"$defs\": {\"node\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": \"integer\"}, "
                       "\"kids\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/node\"}}}, \"required\": [\"v\"], "
                       "\"additionalProperties\": false}}, \"$ref\": \"#/$defs/node\"}";
    check(tree, L("{\"v\": 1}", "{\"v\": 1, \"kids\": [{\"v\": 2, \"kids\": [{\"v\": 3}]}, {\"v\": 4}]}"),
          L("{\"v\": 1, \"kids\": [{}]}", "{\"kids\": []}"));
    check("{\"type\": [\"array\", \"integer\"], \"items\": {\"$ref\": \"#\"}}", L("1", "[]", "[1, [2, [3]]]"), L("[\"a\"]"));
    check("{\"definitions\": {\"a~b/c\": {\"type\": \"null\"}}, \"properties\": {\"x\": {\"$ref\": \"#/definitions/a~0b~1c\"}}}",
          L("{\"x\": null}"), L("{\"x\": 1}"));
    /* draft-07: siblings of $ref are ignored; 2020-12: they apply */
    check("{\"$schema\": \"http://json-schema.org/draft-07/schema#\", \"definitions\": {\"i\": {\"type\": \"integer\"}}, "
          "\"properties\": {\"x\": {\"$ref\": \"#/definitions/i\", \"minimum\": 5}}}",
          L("{\"x\": 1}"), L("{\"x\": \"s\"}"));
    check("{\"$defs\": {\"i\": {\"type\": \"integer\"}}, \"properties\": {\"x\": {\"$ref\": \"#/$defs/i\", \"minimum\": 5}}}",
          L("{\"x\": 5}"), L("{\"x\": 1}"));
    refused("{\"$ref\": \"other.json#/x\"}", ERR_UNSUPPORTED, "$ref");
    refused("{\"$ref\": \"#/$defs/missing\"}", ERR_CONSTRAINT, "$ref");
}

Test(schema, strings) {
    check("{\"type\": \"string\", \"minLength\": 2, \"maxLength\": 3}", L("\"ab\"", "\"abc\"", "\"éé\"", "\"\\n\\t\"", "\"😀😀\""),
          L("\"a\"", "\"abcd\"", "\"\""));
    /* patterns are unanchored: "contains" */
    check("{\"type\": \"string\", \"pattern\": \"abc\"}", L("\"abc\"", "\"xxabcyy\""), L("\"ab\"", "\"a b c\""));
    check("{\"type\": \"string\", \"pattern\": \"^[a-z]+$\"}", L("\"abc\""), L("\"\"", "\"aB\"", "\"ab\\n\""));
    check("{\"type\": \"string\", \"pattern\": \"^a|b$\"}", L("\"ax\"", "\"xb\""), L("\"xa\"", "\"bx\""));
    check("{\"type\": \"string\", \"pattern\": \"^\\\\d{3}-\\\\w\\\\s[^\\\"]$\"}", L("\"123-a x\""), L("\"123-a \\\"\"", "\"12-a x\""));
    check("{\"type\": \"string\", \"pattern\": \"^[\\\"\\\\\\\\]+$\"}", L("\"\\\"\\\\\""), L("\"a\""));
    /* a length folded into a one-character repeat */
    check("{\"type\": \"string\", \"pattern\": \"^[a-z][a-z0-9]*$\", \"maxLength\": 3, \"minLength\": 2}",
          L("\"ab\"", "\"a12\""), L("\"a\"", "\"abcd\"", "\"1a\""));
    refused("{\"type\": \"string\", \"pattern\": \"(a)\\\\1\"}", ERR_UNSUPPORTED, "back-reference");
    refused("{\"type\": \"string\", \"pattern\": \"(?=a)\"}", ERR_UNSUPPORTED, "look-around");
    refused("{\"type\": \"string\", \"pattern\": \"a\", \"maxLength\": 4}", ERR_UNSUPPORTED, "minLength/maxLength");
    refused("{\"type\": \"string\", \"minLength\": 3, \"maxLength\": 2}", ERR_CONSTRAINT, "minLength");
}

Test(schema, formats) {
    check("{\"type\": \"string\", \"format\": \"date\"}", L("\"2024-02-29\"", "\"2000-02-29\"", "\"0001-01-01\"", "\"1999-12-31\""),
          L("\"2023-02-29\"", "\"1900-02-29\"", "\"0000-01-01\"", "\"2024-13-01\"", "\"2024-04-31\"", "\"2024-1-01\""));
    check("{\"type\": \"string\", \"format\": \"time\"}", L("\"23:59:59Z\"", "\"00:00:00.123+05:30\"", "\"12:00:00z\""),
          L("\"24:00:00Z\"", "\"12:00:00\"", "\"12:60:00Z\"", "\"12:00:60Z\""));
    check("{\"type\": \"string\", \"format\": \"date-time\"}", L("\"2024-01-31T10:00:00Z\"", "\"2024-01-31t10:00:00-01:00\""),
          L("\"2024-01-31 10:00:00Z\"", "\"2024-02-30T10:00:00Z\""));
    check("{\"type\": \"string\", \"format\": \"uuid\"}", L("\"123e4567-e89b-12d3-a456-426614174000\""),
          L("\"123e4567e89b12d3a456426614174000\"", "\"123e4567-e89b-12d3-a456-42661417400g\""));
    check("{\"type\": \"string\", \"format\": \"ipv4\"}", L("\"0.0.0.0\"", "\"255.255.255.255\"", "\"10.1.2.3\""),
          L("\"256.1.1.1\"", "\"01.1.1.1\"", "\"1.1.1\"", "\"1.1.1.1.\""));
    check("{\"type\": \"string\", \"format\": \"ipv6\"}", L("\"::\"", "\"::1\"", "\"fe80::1:2\"", "\"1:2:3:4:5:6:7:8\"", "\"::ffff:1.2.3.4\""),
          L("\"1:2:3:4:5:6:7:8:9\"", "\"1::2::3\"", "\"12345::\"", "\":1\""));
    check("{\"type\": \"string\", \"format\": \"email\"}", L("\"a@b\"", "\"@\""), L("\"ab\""));
    check("{\"type\": \"string\", \"format\": \"uri\"}", L("\"https://example.com/a?b=c#d\"", "\"urn:isbn:123\"", "\"mailto:a@b.c\""),
          L("\"//example.com\"", "\"not a uri\"", "\"http://a b\""));
    check("{\"type\": \"string\", \"format\": \"duration\"}", L("\"P1D\"", "\"PT1H30M\"", "\"P1Y2M3DT4H5M6S\"", "\"P2W\""),
          L("\"P\"", "\"PT\"", "\"1D\"", "\"P1H\""));
    /* formats no validator knows are annotations */
    check("{\"type\": \"string\", \"format\": \"int32\"}", L("\"x\""), NULL);
    refused("{\"type\": \"string\", \"format\": \"idn-hostname\"}", ERR_UNSUPPORTED, "idn-hostname");
}

/* ---- numbers ------------------------------------------------------------- */

static char *int_schema(const char *extra) {
    char *s = malloc(512);
    snprintf(s, 512, "{\"type\": \"integer\", %s}", extra);
    return s;
}

/* Every integer in [lo - 40, hi + 40] against the bounds. */
static void sweep_int(long lo, bool lo_ex, long hi, bool hi_ex) {
    char extra[200];
    snprintf(extra, sizeof extra, "\"%s\": %ld, \"%s\": %ld", lo_ex ? "exclusiveMinimum" : "minimum", lo,
             hi_ex ? "exclusiveMaximum" : "maximum", hi);
    char *s = int_schema(extra);
    CGrammar *g = compile(s);
    for (long x = lo - 40; x <= hi + 40; x++) {
        char t[32];
        snprintf(t, sizeof t, "%ld", x);
        bool want = (lo_ex ? x > lo : x >= lo) && (hi_ex ? x < hi : x <= hi);
        cr_expect_eq(matches(g, t), want, "%s: %s", s, t);
    }
    /* and a few far away */
    const char *far[] = {"123456789012", "-123456789012", "100000", "-100000"};
    for (int i = 0; i < 4; i++) {
        long x = atol(far[i]);
        bool want = (lo_ex ? x > lo : x >= lo) && (hi_ex ? x < hi : x <= hi);
        cr_expect_eq(matches(g, far[i]), want, "%s: %s", s, far[i]);
    }
    cg_unref(g);
    free(s);
}

Test(schema, integer_ranges_exact) {
    long cases[][2] = {{0, 0}, {0, 9}, {-5, 5}, {7, 1000}, {-123, 4567}, {99, 101}, {-1000, -999}, {10, 99}, {1, 1}, {-77, 0}, {0, 100}, {19, 2001}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int ex = 0; ex < 4; ex++) {
            long lo = cases[i][0], hi = cases[i][1];
            if ((ex & 1) && (ex & 2) && hi - lo < 2) continue;
            if ((ex & 3) && hi == lo) continue;
            sweep_int(lo, ex & 1, hi, ex & 2);
        }
    /* one-sided and huge bounds */
    check("{\"type\": \"integer\", \"minimum\": 98}", L("98", "99", "100", "12345678901234567890"), L("97", "-100", "9"));
    check("{\"type\": \"integer\", \"exclusiveMaximum\": -9}", L("-10", "-100", "-12345678901234567890"), L("-9", "0", "5"));
    check("{\"type\": \"integer\", \"minimum\": 99999999999999999999, \"maximum\": 100000000000000000001}",
          L("99999999999999999999", "100000000000000000000", "100000000000000000001"),
          L("99999999999999999998", "100000000000000000002", "9999999999999999999"));
    /* fractional bounds on integers */
    check("{\"type\": \"integer\", \"minimum\": 1.5, \"maximum\": 3.5}", L("2", "3"), L("1", "4"));
    check("{\"type\": \"integer\", \"minimum\": -2.5, \"exclusiveMaximum\": 0.0}", L("-2", "-1"), L("-3", "0"));
    /* draft-04 boolean exclusives */
    check("{\"$schema\": \"http://json-schema.org/draft-04/schema#\", \"type\": \"integer\", \"minimum\": 0, "
          "\"exclusiveMinimum\": true, \"maximum\": 3, \"exclusiveMaximum\": true}",
          L("1", "2"), L("0", "3"));
    refused("{\"type\": \"integer\", \"minimum\": 5, \"maximum\": 4}", ERR_CONSTRAINT, "minimum");
}

/* Decimal texts k/1000 for k in a window, with 0-3 fraction digits (and a
 * trailing zero), against bounds in thousandths. */
static void sweep_num(long lo, bool lo_ex, long hi, bool hi_ex) {
    char extra[200], s[300];
    snprintf(extra, sizeof extra, "\"%s\": %s%ld.%03ld, \"%s\": %s%ld.%03ld", lo_ex ? "exclusiveMinimum" : "minimum",
             lo < 0 ? "-" : "", labs(lo) / 1000, labs(lo) % 1000, hi_ex ? "exclusiveMaximum" : "maximum", hi < 0 ? "-" : "",
             labs(hi) / 1000, labs(hi) % 1000);
    snprintf(s, sizeof s, "{\"type\": \"number\", %s}", extra);
    CGrammar *g = compile(s);
    for (long k = lo - 1500; k <= hi + 1500; k++) {
        bool want = (lo_ex ? k > lo : k >= lo) && (hi_ex ? k < hi : k <= hi);
        long a = labs(k);
        const char *sg = k < 0 ? "-" : "";
        char t[4][48];
        int nt = 0;
        snprintf(t[nt++], 48, "%s%ld.%03ld", sg, a / 1000, a % 1000);
        snprintf(t[nt++], 48, "%s%ld.%03ld0", sg, a / 1000, a % 1000);
        if (a % 10 == 0) snprintf(t[nt++], 48, "%s%ld.%02ld", sg, a / 1000, (a % 1000) / 10);
        if (a % 1000 == 0 && k != 0) snprintf(t[nt++], 48, "%s%ld", sg, a / 1000);
        for (int i = 0; i < nt; i++) {
            if (k == 0 && t[i][0] == '-') continue;
            cr_expect_eq(matches(g, t[i]), want, "%s: %s", s, t[i]);
        }
    }
    cg_unref(g);
}

Test(schema, number_bounds_exact) {
    long cases[][2] = {{0, 1500}, {-2250, 3125}, {-1001, -1}, {125, 130}, {0, 0}, {-5, 5}, {999, 10001}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        for (int ex = 0; ex < 4; ex++) {
            if (cases[i][0] == cases[i][1] && ex) continue;
            sweep_num(cases[i][0], ex & 1, cases[i][1], ex & 2);
        }
    check("{\"type\": \"number\", \"exclusiveMinimum\": 0}", L("0.0001", "5", "1.5"), L("0", "0.0", "-0.5", "-1"));
    check("{\"type\": \"number\", \"multipleOf\": 0.01, \"minimum\": 0}", L("0", "1.5", "1.25", "1.250", "100"), L("1.255", "-1", "0.001"));
    check("{\"type\": \"number\", \"multipleOf\": 1}", L("3", "-3"), L("3.5"));
    refused("{\"type\": \"number\", \"multipleOf\": 0.3}", ERR_UNSUPPORTED, "multipleOf");
}

Test(schema, whitespace_options) {
    const char *s = "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"array\", \"items\": {\"type\": \"integer\"}}}}";
    check(s, L("{\"a\": [1, 2]}", "{\"a\":[1,2]}"), L("{ \"a\": [1, 2]}", "{\"a\" : [1]}", "{\"a\": [1 ]}", "{\"a\":\n[1]}"));
    CgJsonOptions any = {.any_whitespace = true};
    CGrammar *g = compile_opt(s, &any);
    cr_expect(matches(g, "{ \"a\" :\n [ 1 ,\t2 ] }"));
    cr_expect(!matches(g, "{\"a\": [1 2]}"));
    cg_unref(g);
    CgJsonOptions ind = {.indent = 2};
    CGrammar *h = NULL;
    char err[200];
    cr_expect_eq(cg_compile_json(s, strlen(s), &ind, NULL, &h, err, sizeof err), ERR_UNSUPPORTED);
    cr_expect(strstr(err, "indent"));
}

Test(schema, json_any_and_bad_text) {
    CGrammar *g = NULL;
    char err[200];
    cr_assert_eq(cg_compile_json_any(NULL, &g, err, sizeof err), 0, "%s", err);
    cr_expect(matches(g, "{\"a\": [1, 2.5e3, null, true, \"xé\\n\\u0001\"]}"));
    /* one spelling per character: json.dumps' (ensure_ascii=False) */
    cr_expect(!matches(g, "\"\\u00e9\""));
    cr_expect(!matches(g, "{\"a\": [1, 2,]}"));
    cg_unref(g);
    refused("{\"type\": ", ERR_CONSTRAINT, "JSON");
    refused("{\"type\": \"string\", \"pattern\": \"\\ud800\"}", ERR_CONSTRAINT, "surrogate");
}

/* ---- soundness: random walks validated by Python's jsonschema ------------ */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* A random accepted text: byte by byte among the bytes that keep a prefix
 * of the language; NULL when the walk ran past the cap. */
static char *walk(const CGrammar *g, size_t cap) {
    char *t = malloc(cap + 1);
    size_t n = 0;
    for (;;) {
        if (n > 0 && cg_match(g, t, n, NULL) == 1 && (rnd() % 4 == 0 || n > cap / 2)) break;
        if (n == cap) {
            free(t);
            return NULL;
        }
        int ok[256], nok = 0;
        for (int c = 0; c < 256; c++) {
            bool pre = false;
            t[n] = (char)c;
            cg_match(g, t, n + 1, &pre);
            if (pre) ok[nok++] = c;
        }
        if (nok == 0) break;   /* accepted and nothing may follow */
        /* prefer structure over long strings: weight printable ASCII */
        t[n++] = (char)ok[rnd() % (unsigned)nok];
    }
    t[n] = 0;
    return t;
}

static const char *const sound_schemas[] = {
    "{\"type\": \"integer\", \"minimum\": -37, \"exclusiveMaximum\": 1234}",
    "{\"type\": \"number\", \"minimum\": -2.5, \"maximum\": 10.125}",
    "{\"type\": \"number\", \"exclusiveMinimum\": 0.001, \"exclusiveMaximum\": 0.01}",
    "{\"type\": \"number\", \"multipleOf\": 0.01, \"maximum\": 3}",
    "{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 4}",
    "{\"type\": \"string\", \"pattern\": \"^[A-Z]{2}-\\\\d+$\"}",
    "{\"type\": \"string\", \"pattern\": \"x[\\\"\\\\\\\\]y\"}",
    "{\"type\": \"string\", \"format\": \"date-time\"}",
    "{\"type\": \"string\", \"format\": \"date\"}",
    "{\"type\": \"string\", \"format\": \"ipv4\"}",
    "{\"type\": \"string\", \"format\": \"ipv6\"}",
    "{\"type\": \"string\", \"format\": \"uuid\"}",
    "{\"type\": \"string\", \"format\": \"time\"}",
    "{\"type\": \"string\", \"format\": \"uri\"}",
    "{\"type\": \"string\", \"format\": \"duration\"}",
    "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\"}, \"b\": {\"enum\": [\"x\", 2, null]}}, "
    "\"required\": [\"a\"], \"additionalProperties\": {\"type\": \"boolean\"}}",
    "{\"type\": \"array\", \"prefixItems\": [{\"const\": 1}], \"items\": {\"type\": \"string\", \"maxLength\": 2}, \"maxItems\": 3}",
    "{\"anyOf\": [{\"type\": \"null\"}, {\"type\": \"object\", \"properties\": {\"k\": {\"type\": \"string\"}}, \"additionalProperties\": false}]}",
    "{\"oneOf\": [{\"type\": \"integer\", \"maximum\": 0}, {\"type\": \"string\", \"format\": \"email\"}]}",
    "{\"$defs\": {\"n\": {\"type\": \"object\", \"properties\": {\"c\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/n\"}, "
    "\"maxItems\": 2}}, \"additionalProperties\": false}}, \"$ref\": \"#/$defs/n\"}",
    "{\"allOf\": [{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": 3}}}, "
    "{\"required\": [\"a\"], \"properties\": {\"a\": {\"maximum\": 9}}}]}",
    "{\"type\": \"object\", \"patternProperties\": {\"^[a-c]+$\": {\"type\": \"integer\"}}, \"additionalProperties\": false}",
    "{\"type\": \"object\", \"properties\": {\"ab\": {\"type\": \"null\"}}, \"patternProperties\": {\"^a\": {\"type\": \"integer\"}, \"b$\": {\"type\": \"integer\", \"minimum\": 3}}, "
    "\"additionalProperties\": {\"type\": \"string\", \"maxLength\": 2}}",
    "{\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"string\"}}, \"additionalProperties\": false, \"required\": [\"x\"]}",
    "{}",
};

Test(schema, soundness_against_python_jsonschema, .timeout = 600) {
    const char *py = "build/venv/bin/python";
    if (access(py, X_OK) != 0) {
        /* the venv is made by `make test` (make venv) */
        cr_skip_test("no %s: run make venv", py);
    }
    char path[] = "/tmp/sgl_schema_walks_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    int nwalks = 0;
    for (size_t i = 0; i < sizeof sound_schemas / sizeof *sound_schemas; i++) {
        CGrammar *g = compile(sound_schemas[i]);
        for (int k = 0; k < 25; k++) {
            char *t = walk(g, 160);
            if (!t) continue;
            /* the walk is accepted by construction */
            cr_expect(matches(g, t));
            fprintf(f, "%zu\t", i);
            for (char *p = t; *p; p++) {
                if (*p == '\n') fputs("\\x0a", f);
                else if (*p == '\t') fputs("\\x09", f);
                else if (*p == '\\') fputs("\\\\", f);
                else fputc(*p, f);
            }
            fputc('\n', f);
            nwalks++;
            free(t);
        }
        cg_unref(g);
    }
    fclose(f);
    cr_expect_gt(nwalks, 300, "walks: %d", nwalks);
    /* the schemas, one a line */
    char spath[] = "/tmp/sgl_schema_list_XXXXXX";
    int sfd = mkstemp(spath);
    FILE *sf = fdopen(sfd, "w");
    for (size_t i = 0; i < sizeof sound_schemas / sizeof *sound_schemas; i++) fprintf(sf, "%s\n", sound_schemas[i]);
    fclose(sf);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s tests/tools/schema_validate.py %s %s", py, spath, path);
    int rc = system(cmd);
    cr_expect_eq(rc, 0, "the independent validator rejected some walks (see above): %s", cmd);
    unlink(path);
    unlink(spath);
}
