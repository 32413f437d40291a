/* tests/unit/test_embed_value.c — include/sgl.h's value API (sgl_value)
 * and sgl_call: building arguments, calling by name and by position,
 * reading text/vars/value back with their kinds, and the errors (usage and
 * runtime, with file:line:col). No model needed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sgl.h"

static sgl_program *compile(sgl_vm *vm, const char *src)
{
    sgl_program *p = NULL;
    cr_assert_eq(sgl_compile_source(vm, "calc.sgl", src, strlen(src), &p), SGL_OK, "%s", sgl_last_error(vm));
    return p;
}

Test(value, building_reading_and_json)
{
    sgl_value *m = sgl_value_map();
    cr_assert_eq(sgl_map_set(m, "n", sgl_value_int(-7)), SGL_OK);
    cr_assert_eq(sgl_map_set(m, "x", sgl_value_float(2.0)), SGL_OK);
    cr_assert_eq(sgl_map_set(m, "s", sgl_value_string("a\0b", 3)), SGL_OK);
    sgl_value *l = sgl_value_list();
    cr_assert_eq(sgl_list_append(l, sgl_value_bool(1)), SGL_OK);
    cr_assert_eq(sgl_list_append(l, sgl_value_nil()), SGL_OK);
    cr_assert_eq(sgl_map_set(m, "l", l), SGL_OK);
    cr_assert_eq(sgl_map_set(m, "n", sgl_value_int(8)), SGL_OK, "replacing keeps the place");
    cr_assert_eq(sgl_value_len(m), 4);
    cr_assert_str_eq(sgl_map_key(m, 0), "n");
    cr_assert_eq(sgl_value_as_int(sgl_map_get(m, "n")), 8);
    cr_assert_eq(sgl_value_type(sgl_map_get(m, "x")), SGL_FLOAT);
    size_t len;
    const char *s = sgl_value_as_string(sgl_map_get(m, "s"), &len);
    cr_assert(len == 3 && memcmp(s, "a\0b", 3) == 0);
    cr_assert_null(sgl_map_get(m, "nope"));
    cr_assert_null(sgl_list_get(l, 2));
    cr_assert(sgl_value_as_bool(sgl_list_get(l, 0)));
    /* a list or map takes the item even when it refuses it */
    cr_assert_eq(sgl_list_append(m, sgl_value_int(1)), SGL_ERR_USAGE);
    cr_assert_eq(sgl_map_set(l, "k", sgl_value_int(1)), SGL_ERR_USAGE);
    char *js = sgl_value_to_json(m);
    cr_assert_str_eq(js, "{\"n\":8,\"x\":2,\"s\":\"a\\u0000b\",\"l\":[true,null]}");
    sgl_value *back = NULL;
    char err[256];
    cr_assert_eq(sgl_value_from_json(js, strlen(js), &back, err, sizeof err), SGL_OK, "%s", err);
    cr_assert_eq(sgl_value_type(sgl_map_get(back, "x")), SGL_INT, "an integral number reads as an int");
    s = sgl_value_as_string(sgl_map_get(back, "s"), &len);
    cr_assert(len == 3 && memcmp(s, "a\0b", 3) == 0);
    sgl_value *bad = NULL;
    cr_assert_eq(sgl_value_from_json("[1,", 3, &bad, err, sizeof err), SGL_ERR_USAGE);
    cr_assert_null(bad);
    cr_assert(strstr(err, "<json>:1:"), "%s", err);
    sgl_value *nan = sgl_value_float(NAN);
    cr_assert_null(sgl_value_to_json(nan), "NaN is not JSON");
    sgl_value_free(nan);
    free(js);
    sgl_value_free(back);
    sgl_value_free(m);
    sgl_value_free(NULL);
}

static const char calc_src[] =
    "fn main(a, b = 2, opts = {}) {\n"
    "  \"sum \" + str(a + b)\n"
    "  state[\"half\"] = (a + b) / 2\n"
    "  return {\"sum\": a + b, \"tags\": [\"tag\" in opts ? opts[\"tag\"] : nil, 1.0, nil], \"f\": main, 3: \"three\"}\n"
    "}\n"
    "fn boom(x) {\n"
    "  return x / 0\n"
    "}\n";

Test(value, call_by_name_and_by_position)
{
    sgl_vm *vm = sgl_vm_new();
    sgl_program *p = compile(vm, calc_src);
    sgl_value *args = sgl_value_map();
    sgl_map_set(args, "a", sgl_value_int(40));
    sgl_value *opts = sgl_value_map();
    sgl_map_set(opts, "tag", sgl_value_cstring("x"));
    sgl_map_set(args, "opts", opts);
    sgl_value *res = NULL;
    cr_assert_eq(sgl_call(vm, p, NULL, args, &res), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert_str_eq(sgl_value_as_string(sgl_map_get(res, "text"), NULL), "sum 42");
    sgl_value *vars = sgl_map_get(res, "vars");
    cr_assert_eq(sgl_value_type(sgl_map_get(vars, "half")), SGL_FLOAT);
    cr_assert_float_eq(sgl_value_as_float(sgl_map_get(vars, "half")), 21.0, 1e-12);
    sgl_value *v = sgl_map_get(res, "value");
    cr_assert_eq(sgl_value_as_int(sgl_map_get(v, "sum")), 42);
    sgl_value *tags = sgl_map_get(v, "tags");
    cr_assert_str_eq(sgl_value_as_string(sgl_list_get(tags, 0), NULL), "x");
    cr_assert_eq(sgl_value_type(sgl_list_get(tags, 1)), SGL_FLOAT, "1.0 stays a float");
    cr_assert_eq(sgl_value_type(sgl_list_get(tags, 2)), SGL_NIL);
    cr_assert_str_eq(sgl_value_as_string(sgl_map_get(v, "f"), NULL), "<fn main>");
    cr_assert_str_eq(sgl_value_as_string(sgl_map_get(v, "3"), NULL), "three");
    sgl_value_free(res);
    sgl_value_free(args);

    /* positional: a list in parameter order */
    sgl_value *pos = sgl_value_list();
    sgl_list_append(pos, sgl_value_int(1));
    sgl_list_append(pos, sgl_value_float(0.5));
    cr_assert_eq(sgl_call(vm, p, "main", pos, &res), SGL_OK, "%s", sgl_last_error(vm));
    cr_assert_str_eq(sgl_value_as_string(sgl_map_get(res, "text"), NULL), "sum 1.5");
    sgl_value_free(res);
    /* the same text through sgl_result_text */
    size_t n;
    cr_assert_str_eq(sgl_result_text(vm, &n), "sum 1.5");
    sgl_list_append(pos, sgl_value_nil());
    sgl_list_append(pos, sgl_value_nil());
    cr_assert_eq(sgl_call(vm, p, "main", pos, &res), SGL_ERR_USAGE);
    cr_assert(strstr(sgl_last_error(vm), "takes 3 arguments, 4 given"), "%s", sgl_last_error(vm));
    sgl_value_free(pos);

    /* usage errors name what is wrong; nothing runs */
    cr_assert_eq(sgl_call(vm, p, NULL, NULL, &res), SGL_ERR_USAGE);
    cr_assert(strstr(sgl_last_error(vm), "missing argument 'a'"), "%s", sgl_last_error(vm));
    cr_assert_eq(sgl_call(vm, p, "nope", NULL, &res), SGL_ERR_USAGE);
    cr_assert(strstr(sgl_last_error(vm), "no function 'nope'"), "%s", sgl_last_error(vm));
    sgl_value *one = sgl_value_int(1);
    cr_assert_eq(sgl_call(vm, p, NULL, one, &res), SGL_ERR_USAGE);
    sgl_value_free(one);

    /* a runtime error: file:line:col */
    sgl_value *x = sgl_value_list();
    sgl_list_append(x, sgl_value_int(1));
    cr_assert_eq(sgl_call(vm, p, "boom", x, &res), SGL_ERR_RUNTIME);
    cr_assert_null(res);
    cr_assert(strstr(sgl_last_error(vm), "calc.sgl:7:"), "%s", sgl_last_error(vm));
    cr_assert(strstr(sgl_last_error(vm), "error:"), "%s", sgl_last_error(vm));
    sgl_value_free(x);
    sgl_program_free(p);
    sgl_vm_free(vm);
}
