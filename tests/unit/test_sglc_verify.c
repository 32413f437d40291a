/* tests/unit/test_sglc_verify.c — the bytecode verifier (compiler/sglc_verify.c):
 * a .sglc file whose body was changed and whose checksum was fixed up is
 * rejected with a message naming the function and the pc, one case per
 * class of fact the VM takes on trust (the tags P1..D5 are the verifier's);
 * everything the compiler writes is accepted; and the fuzzer's reproducers
 * (tests/fuzz/sglc_regress/) load, or fail to, without a crash.
 *
 * A patch is made either on the bytes (then the CRC is recomputed, as an
 * attacker would) or on the decoded Program before encoding it again,
 * which writes a fresh CRC the same way. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <glob.h>
#include <stdio.h>
#include <unistd.h>

#include "base/err.h"
#include "compiler/chunk.h"
#include "compiler/compile.h"
#include "compiler/sglc.h"
#include "run_helper.h"

TestSuite(sglc_verify);

static const char *const BUILTINS[] = {"print", "len", "str", "gen", "append"};
static const CmpOptions OPT = {.stdlib_dir = "stdlib", .builtins = BUILTINS, .nbuiltins = 5};

static char ERR[1024];

static Program *compile(const char *src)
{
    Program *p = NULL;
    char *err = NULL;
    int rc = cmp_compile_source(&OPT, "t.sgl", src, strlen(src), &p, &err);
    cr_assert_eq(rc, 0, "compile failed: %s", err ? err : "?");
    cr_assert_eq(sglc_verify(p, ERR, sizeof ERR), 0, "compiled code fails verification: %s", ERR);
    return p;
}

static Proto *fn_named(Program *p, const char *name)
{
    for (int i = 0; i < p->nprotos; i++)
        if (strcmp(p->protos[i]->name, name) == 0) return p->protos[i];
    cr_assert_fail("no function %s", name);
    return NULL;
}

/* The pc of the nth (0-based) instruction with opcode op. */
static int find_op(const Proto *f, OpCode op, int nth)
{
    for (int pc = 0; pc < f->ncode; pc++)
        if (GET_OP(f->code[pc]) == op && nth-- == 0) return pc;
    cr_assert_fail("no %s in %s", op_info[op].name, f->name);
    return -1;
}

static int add_const(Proto *f, Const k)
{
    int i = chunk_add_const(f, &k);
    cr_assert(i >= 0);
    return i;
}

static char *dup_cstr(const char *s)
{
    char *d = strdup(s);
    cr_assert(d);
    return d;
}

/* Encodes p (with a correct checksum) and decodes it again: the decoder's
 * code, its message in ERR. p is freed. */
static int reload(Program *p)
{
    unsigned char *buf;
    size_t len;
    cr_assert_eq(sglc_encode(p, &buf, &len), 0);
    chunk_program_free(p);
    Program *out = NULL;
    ERR[0] = '\0';
    int rc = sglc_decode(buf, len, &out, ERR, sizeof ERR);
    free(buf);
    if (rc == 0) chunk_program_free(out);
    else cr_assert_null(out);
    return rc;
}

/* The patched program is refused, for a reason about function fn (at a pc
 * when pc_too), with `want` in the message. */
static void expect_rejected(Program *p, const char *fn, int pc_too, const char *want)
{
    int rc = reload(p);
    cr_assert_eq(rc, ERR_BYTECODE, "accepted (%d) where '%s' was expected: %s", rc, want, ERR);
    char head[128];
    snprintf(head, sizeof head, "bad bytecode in function %s (", fn);
    cr_assert(strstr(ERR, head), "message does not name %s: %s", fn, ERR);
    if (pc_too) cr_assert(strstr(ERR, " at pc "), "message has no pc: %s", ERR);
    cr_assert(strstr(ERR, want), "message lacks '%s': %s", want, ERR);
}

static uint32_t crc32_ref(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

/* The header of a .sglc file around body[0..n): what a patcher writes. */
static unsigned char *wrap_body(const unsigned char *body, size_t n, size_t *len)
{
    unsigned char *buf = malloc(20 + n);
    cr_assert(buf);
    memcpy(buf, "SGLC", 4);
    uint32_t version = SGLC_VERSION, crc = crc32_ref(body, n);
    uint64_t blen = n;
    for (int k = 0; k < 4; k++) buf[4 + k] = (unsigned char)(version >> (8 * k));
    for (int k = 0; k < 8; k++) buf[8 + k] = (unsigned char)(blen >> (8 * k));
    for (int k = 0; k < 4; k++) buf[16 + k] = (unsigned char)(crc >> (8 * k));
    if (n) memcpy(buf + 20, body, n);
    *len = 20 + n;
    return buf;
}

static void fix_crc(unsigned char *buf, size_t len)
{
    uint32_t c = crc32_ref(buf + 20, len - 20);
    for (int k = 0; k < 4; k++) buf[16 + k] = (unsigned char)(c >> (8 * k));
}

static size_t find_bytes(const unsigned char *buf, size_t len, const void *pat, size_t n, int last)
{
    size_t at = (size_t)-1;
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, pat, n) == 0) {
            at = i;
            if (!last) break;
        }
    cr_assert_neq(at, (size_t)-1, "pattern not found");
    return at;
}

static char *write_temp(const unsigned char *buf, size_t len)
{
    char *path = dup_cstr("/tmp/sgl_verify_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, buf, len), (ssize_t)len);
    close(fd);
    return path;
}

/* ---- the two crashes that started this ---- */

/* A required-parameter bit beyond the parameters made the missing-argument
 * message read param_names[7] (a segfault in `sgl run`). Patched in the
 * bytes, loaded through the API as `sgl run` does. */
Test(sglc_verify, required_mask_beyond_the_parameters)
{
    Program *p = compile("fn main(a, b = 1) {\n  print(a, b)\n}\n");
    unsigned char *buf;
    size_t len;
    cr_assert_eq(sglc_encode(p, &buf, &len), 0);
    chunk_program_free(p);
    /* main's record: name "main", module, line, col, nparams, maxstack,
     * then the u64 mask (the global "main" comes earlier: take the last) */
    size_t at = find_bytes(buf, len, "\x04\0\0\0main", 8, 1) + 8 + 5 * 4;
    cr_assert_eq(buf[at], 1, "mask of main(a, b = 1) should be 0b01");
    buf[at] |= 0x80;
    fix_crc(buf, len);
    char *path = write_temp(buf, len);
    free(buf);

    Run r;
    run_init(&r, NULL);
    sgl_program *prog = NULL;
    cr_assert_eq(sgl_program_load(r.vm, path, &prog), SGL_ERR_IO);
    cr_assert_null(prog);
    const char *msg = sgl_last_error(r.vm);
    cr_assert(strstr(msg, "bad bytecode in function main (#1, t.sgl:1)"), "%s", msg);
    cr_assert(strstr(msg, "required-parameter mask 0x81 names parameters beyond its 2"), "%s", msg);
    run_done(&r);
    unlink(path);
    free(path);
}

/* MAPADD on a register that holds no map sent map_set into a list's (or
 * string's) memory: a heap-buffer-overflow found by fuzzing the loader. */
Test(sglc_verify, mapadd_needs_a_map)
{
    Program *p = compile("fn main() {\n  let k = \"x\"\n  let m = {k: 1, \"b\": [1]}\n  print(m)\n}\n");
    Proto *f = fn_named(p, "main");
    Instr newmap = f->code[find_op(f, OP_NEWMAP, 0)];
    Instr mapadd = CREATE_ABC(OP_MAPADD, GETARG_A(newmap), GETARG_B(newmap), 0);
    unsigned char *buf;
    size_t len;
    cr_assert_eq(sglc_encode(p, &buf, &len), 0);
    chunk_program_free(p);
    unsigned char pat[4], rep[4];
    for (int k = 0; k < 4; k++) {
        pat[k] = (unsigned char)(newmap >> (8 * k));
        rep[k] = (unsigned char)(mapadd >> (8 * k));
    }
    memcpy(buf + find_bytes(buf, len, pat, 4, 0), rep, 4);
    fix_crc(buf, len);
    Program *out = NULL;
    cr_assert_eq(sglc_decode(buf, len, &out, ERR, sizeof ERR), ERR_BYTECODE, "%s", ERR);
    cr_assert_null(out);
    cr_assert(strstr(ERR, "bad bytecode in function main (#1, t.sgl:1) at pc "), "%s", ERR);
    cr_assert(strstr(ERR, "MAPADD: R[1] is not known to hold a map"), "%s", ERR);
    free(buf);
}

/* ---- D1-D5: facts along every path ---- */

static const char *LOOPS = "fn main(n) {\n"
                           "  let l = [1, 2]\n"
                           "  let total = 0\n"
                           "  for i in 0..n { total += i }\n"
                           "  for x in l { print(x) }\n"
                           "  let f = fn() { return total }\n"
                           "  print(f())\n"
                           "}\n";

Test(sglc_verify, listadd_needs_a_list)
{
    Program *p = compile(LOOPS);
    Proto *f = fn_named(p, "main");
    int pc = find_op(f, OP_NEWLIST, 0);
    f->code[pc] = CREATE_ABC(OP_LISTADD, GETARG_A(f->code[pc]), GETARG_B(f->code[pc]), 0);
    expect_rejected(p, "main", 1, "LISTADD: R[1] is not known to hold a list");
}

Test(sglc_verify, forloop_counter_written_in_the_body)
{
    /* the body's ADD becomes a write of a string into the hidden counter */
    Program *p = compile(LOOPS);
    Proto *f = fn_named(p, "main");
    int loop = find_op(f, OP_FORLOOP, 0);
    int a = GETARG_A(f->code[loop]);
    int k = add_const(f, (Const){.kind = KC_STRING, .s = dup_cstr("boom"), .len = 4});
    f->code[loop - 1] = CREATE_ABx(OP_LOADK, a, k);
    expect_rejected(p, "main", 1, "FORLOOP: R[");
}

Test(sglc_verify, forloop_without_forprep)
{
    Program *p = compile(LOOPS);
    Proto *f = fn_named(p, "main");
    int prep = find_op(f, OP_FORPREP, 0);
    /* FORPREP R[A] -> exit becomes a plain jump to the FORLOOP */
    int loop = find_op(f, OP_FORLOOP, 0);
    f->code[prep] = CREATE_sJ(OP_JMP, loop - prep - 1);
    expect_rejected(p, "main", 1, "are not the counter and limit of a FORPREP");
}

Test(sglc_verify, iterloop_needs_what_iterprep_set_up)
{
    Program *p = compile(LOOPS);
    Proto *f = fn_named(p, "main");
    int loop = find_op(f, OP_ITERLOOP, 0);
    int a = GETARG_A(f->code[loop]);
    /* the loop's body overwrites the walked value with an int */
    f->code[loop - 1] = CREATE_ABx(OP_LOADI, a, 7 + OFFSET_sBx);
    expect_rejected(p, "main", 1, "ITERLOOP: R[");
}

Test(sglc_verify, a_call_must_not_own_a_captured_register)
{
    /* f captures `total`; a call whose frame starts at or below it would
     * let f change the callee's registers */
    Program *p = compile(LOOPS);
    Proto *f = fn_named(p, "main");
    int cl = find_op(f, OP_CLOSURE, 0);
    int call = find_op(f, OP_CALL, 1);   /* f(), after the CLOSURE */
    cr_assert_gt(call, cl);
    f->code[call] = CREATE_ABC(OP_CALL, 0, 0, 0);
    expect_rejected(p, "main", 1, "is captured (no CLOSE)");
}

Test(sglc_verify, facts_meet_at_joins)
{
    /* a NEWLIST on one path only: the LISTADD after the join is refused */
    Program *p = compile("fn main(c) {\n  let l = [1]\n  if c { l = 2 }\n  print(l)\n}\n");
    Proto *f = fn_named(p, "main");
    int pc = find_op(f, OP_NEWLIST, 0);
    int a = GETARG_A(f->code[pc]);
    int ret = find_op(f, OP_RETURN0, 0);
    f->code[ret] = CREATE_ABC(OP_LISTADD, a, 0, 0);
    cr_assert(chunk_emit(f, CREATE_ABC(OP_RETURN0, 0, 0, 0), 1, 1) >= 0);
    expect_rejected(p, "main", 1, "is not known to hold a list");
}

/* ---- I1-I7: each instruction ---- */

static const char *SIMPLE = "fn main(a) {\n  let x = a\n  if x { print(x, sep: \"-\") }\n  return x\n}\n";

Test(sglc_verify, jump_outside_the_function)
{
    Program *p = compile(SIMPLE);
    Proto *f = fn_named(p, "main");
    f->code[find_op(f, OP_JMP, 0)] = CREATE_sJ(OP_JMP, 5000);
    expect_rejected(p, "main", 1, "jump to ");
}

Test(sglc_verify, jump_into_an_extraarg)
{
    Program *p = compile(SIMPLE);
    Proto *f = fn_named(p, "main");
    int kw = find_op(f, OP_CALLKW, 0);
    int j = find_op(f, OP_JMP, 0);
    cr_assert_lt(j, kw);
    f->code[j] = CREATE_sJ(OP_JMP, kw + 1 - (j + 1));
    expect_rejected(p, "main", 1, "the middle of an instruction");
}

Test(sglc_verify, stray_extraarg_and_missing_extraarg)
{
    Program *p = compile(SIMPLE);
    Proto *f = fn_named(p, "main");
    f->code[0] = CREATE_Ax(OP_EXTRAARG, 0);
    expect_rejected(p, "main", 1, "EXTRAARG outside the instruction");
    p = compile(SIMPLE);
    f = fn_named(p, "main");
    int kw = find_op(f, OP_CALLKW, 0);
    f->code[kw + 1] = CREATE_ABC(OP_MOVE, 0, 0, 0);
    expect_rejected(p, "main", 1, "CALLKW without its EXTRAARG");
}

Test(sglc_verify, running_off_the_end)
{
    Program *p = compile(SIMPLE);
    Proto *f = fn_named(p, "main");
    f->code[f->ncode - 1] = CREATE_ABC(OP_LOADNIL, 0, 0, 0);
    expect_rejected(p, "main", 1, "runs off the end of the function");
}

Test(sglc_verify, a_test_is_followed_by_a_jump)
{
    Program *p = compile(SIMPLE);
    Proto *f = fn_named(p, "main");
    int t = find_op(f, OP_TEST, 0);
    f->code[t + 1] = CREATE_ABC(OP_MOVE, 0, 0, 0);
    expect_rejected(p, "main", 1, "TEST not followed by a JMP");
}

Test(sglc_verify, registers_beyond_the_frame)
{
    Program *p = compile(SIMPLE);
    Proto *f = fn_named(p, "main");
    f->code[0] = CREATE_ABC(OP_MOVE, 0, 200, 0);
    expect_rejected(p, "main", 1, "register B=200 beyond");

    p = compile(SIMPLE);
    f = fn_named(p, "main");
    int ms = f->maxstack;
    f->code[find_op(f, OP_CALLKW, 0)] = CREATE_ABC(OP_CALLKW, ms - 2, 1, 1);
    expect_rejected(p, "main", 1, "beyond");

    p = compile(LOOPS);
    f = fn_named(p, "main");
    f->code[find_op(f, OP_NEWLIST, 0)] = CREATE_ABC(OP_NEWMAP, 1, (f->maxstack) / 2, 0);
    expect_rejected(p, "main", 1, "beyond");

    p = compile(LOOPS);
    f = fn_named(p, "main");
    int prep = find_op(f, OP_FORPREP, 0);
    f->code[prep] = CREATE_ABx(OP_FORPREP, f->maxstack - 2, GETARG_Bx(f->code[prep]));
    expect_rejected(p, "main", 1, "loop registers");
}

Test(sglc_verify, constants_of_the_wrong_kind)
{
    /* a field name that is an int */
    Program *p = compile("fn main(m) {\n  print(m.x)\n}\n");
    Proto *f = fn_named(p, "main");
    int pc = find_op(f, OP_FIELD, 0);
    int k = add_const(f, (Const){.kind = KC_INT, .i = 3});
    Instr i = f->code[pc];
    f->code[pc] = CREATE_ABC(OP_FIELD, GETARG_A(i), GETARG_B(i), k);
    expect_rejected(p, "main", 1, "is not a string");

    /* CALLKW passing two named arguments with a list of one name */
    p = compile(SIMPLE);
    f = fn_named(p, "main");
    pc = find_op(f, OP_CALLKW, 0);
    i = f->code[pc];
    f->code[pc] = CREATE_ABC(OP_CALLKW, GETARG_A(i), GETARG_B(i) - 1, 2);
    expect_rejected(p, "main", 1, "CALLKW passes 2 named arguments but names 1");

    /* loading the argument-name list as a value */
    p = compile(SIMPLE);
    f = fn_named(p, "main");
    pc = find_op(f, OP_CALLKW, 0);
    f->code[0] = CREATE_ABx(OP_LOADK, 1, GETARG_Ax(f->code[pc + 1]));
    expect_rejected(p, "main", 1, "an argument-name list");

    /* appending a number constant */
    p = compile(SIMPLE);
    f = fn_named(p, "main");
    k = add_const(f, (Const){.kind = KC_FLOAT, .f = 1.5});
    f->code[0] = CREATE_ABx(OP_APPENDK, 0, k);
    expect_rejected(p, "main", 1, "not a string");

    /* arithmetic with a string constant */
    p = compile("fn main(a) {\n  return a + 2.5\n}\n");
    f = fn_named(p, "main");
    pc = find_op(f, OP_ADDK, 0);
    k = add_const(f, (Const){.kind = KC_STRING, .s = dup_cstr("s"), .len = 1});
    i = f->code[pc];
    f->code[pc] = CREATE_ABC(OP_ADDK, GETARG_A(i), GETARG_B(i), k);
    expect_rejected(p, "main", 1, "not a number");
}

Test(sglc_verify, argdef_and_roles)
{
    Program *p = compile("fn main(a = 1) {\n  let b = [a, a]\n  user { \"hi\" }\n  return b\n}\n");
    Proto *f = fn_named(p, "main");
    int pc = find_op(f, OP_ARGDEF, 0);
    f->code[pc] = CREATE_ABx(OP_ARGDEF, 1, GETARG_Bx(f->code[pc]));
    expect_rejected(p, "main", 1, "default for parameter 1 of 1");

    p = compile("fn main(a = 1) {\n  let b = [a, a]\n  user { \"hi\" }\n  return b\n}\n");
    f = fn_named(p, "main");
    pc = find_op(f, OP_ROLEBEGIN, 0);
    f->code[pc] = CREATE_ABC(OP_ROLEBEGIN, 7, 0, 0);
    expect_rejected(p, "main", 1, "unknown role 7");
}

/* ---- P1-P6: the program's tables ---- */

Test(sglc_verify, constants_the_compiler_checked)
{
    /* gen() hands re"..." straight to the constraint compiler */
    Program *p = compile("fn main() {\n  let r = re\"[a-z]+\"\n  return r\n}\n");
    Proto *f = fn_named(p, "main");
    for (int j = 0; j < f->nconsts; j++)
        if (f->consts[j].kind == KC_REGEX) {
            free(f->consts[j].s);
            f->consts[j].s = dup_cstr("[a-");
            f->consts[j].len = 3;
        }
    expect_rejected(p, "main", 0, "bad regex");

    p = compile("fn main() {\n  return \"abc\"\n}\n");
    f = fn_named(p, "main");
    for (int j = 0; j < f->nconsts; j++)
        if (f->consts[j].kind == KC_STRING) f->consts[j].s[1] = (char)0xC0;
    expect_rejected(p, "main", 0, "not UTF-8");
}

Test(sglc_verify, parameters_and_globals)
{
    Program *p = compile("fn main(a, b) {\n  return a\n}\n");
    Proto *f = fn_named(p, "main");
    free(f->param_names[1]);
    f->param_names[1] = dup_cstr("a");
    expect_rejected(p, "main", 0, "parameter a declared twice");

    p = compile("fn main(a, b) {\n  return a\n}\n");
    cr_assert(chunk_add_global(&p->mods[0], "main") >= 0);
    cr_assert_eq(reload(p), ERR_BYTECODE);
    cr_assert(strstr(ERR, "global main declared twice"), "%s", ERR);
}

Test(sglc_verify, modules_and_children)
{
    /* a second module whose top level is a function of module 0 */
    Program *p = compile(LOOPS);
    int m = chunk_add_module(p, "/x.sgl", "x.sgl");
    cr_assert_eq(m, 1);
    Proto *init = chunk_proto_new(p, "<top level>", 1, 1, 1);
    p->mods[1].init = init;
    init->maxstack = 1;
    chunk_emit(init, CREATE_ABC(OP_RETURN0, 0, 0, 0), 1, 1);
    /* main's closure f moved to module 1: it would index module 1's globals */
    Proto *f = fn_named(p, "f");
    f->module = 1;
    expect_rejected(p, "main", 0, "belongs to module 1, not 0");

    /* an upvalue of f beyond main's registers */
    p = compile(LOOPS);
    f = fn_named(p, "f");
    f->upvals[0].idx = 200;
    expect_rejected(p, "main", 0, "captures register 200");
}

/* ---- what the compiler writes is accepted ---- */

static int compile_and_reload(Run *r, const char *path)
{
    sgl_program *prog = NULL;
    if (sgl_compile_file(r->vm, path, &prog) != SGL_OK) return 0;   /* a compile-error case */
    char tmp[] = "/tmp/sgl_verify_rt_XXXXXX";
    int fd = mkstemp(tmp);
    close(fd);
    cr_assert_eq(sgl_program_save(r->vm, prog, tmp), SGL_OK, "%s", sgl_last_error(r->vm));
    sgl_program *back = NULL;
    cr_assert_eq(sgl_program_load(r->vm, tmp, &back), SGL_OK, "%s: %s", path, sgl_last_error(r->vm));
    sgl_program_free(back);
    sgl_program_free(prog);
    unlink(tmp);
    return 1;
}

Test(sglc_verify, every_program_in_the_tree_verifies)
{
    static const char *const patterns[] = {"tests/lang/*.sgl", "tests/lang/compile/*.sgl", "tests/e2e/*.sgl",
                                           "examples/*.sgl", "stdlib/*/*.sgl", "bench/programs/*.sgl"};
    Run r;
    run_init(&r, NULL);
    sgl_vm_set_stdlib_path(r.vm, "stdlib");
    int verified = 0;
    for (size_t i = 0; i < sizeof patterns / sizeof patterns[0]; i++) {
        glob_t g;
        if (glob(patterns[i], 0, NULL, &g) != 0) continue;
        for (size_t j = 0; j < g.gl_pathc; j++) verified += compile_and_reload(&r, g.gl_pathv[j]);
        globfree(&g);
    }
    cr_assert_geq(verified, 40, "only %d programs found (run from the repository root)", verified);
    run_done(&r);
}

Test(sglc_verify, compiled_shapes_that_keep_facts_across_calls)
{
    /* loops whose bodies call and capture, list and map literals longer
     * than one NEWLIST/NEWMAP chunk with calls between the chunks */
    char src[8192];
    size_t n = 0;
    n += (size_t)snprintf(src + n, sizeof src - n, "fn id(x) { return x }\nfn main(n) {\n  let fs = []\n");
    n += (size_t)snprintf(src + n, sizeof src - n,
                          "  for i in 0..n {\n    let j = i\n    append(fs, fn() { return j + i })\n"
                          "    for c in \"ab\" { print(id(c), i) }\n    while len(fs) > 10 { break }\n  }\n");
    n += (size_t)snprintf(src + n, sizeof src - n, "  let l = [");
    for (int i = 0; i < 70; i++) n += (size_t)snprintf(src + n, sizeof src - n, "%sid(%d)", i ? ", " : "", i);
    n += (size_t)snprintf(src + n, sizeof src - n, "]\n  let m = {");
    for (int i = 0; i < 40; i++) n += (size_t)snprintf(src + n, sizeof src - n, "%s\"k%d\": id(%d)", i ? ", " : "", i, i);
    n += (size_t)snprintf(src + n, sizeof src - n, "}\n  let s = fork k in 2 { \"${k}${n}\" }\n");
    n += (size_t)snprintf(src + n, sizeof src - n, "  return [len(l), len(m), len(fs), len(s)]\n}\n");
    Run r;
    run_init(&r, NULL);
    cr_assert_eq(run_src(&r, src, NULL, "{\"n\": 3}"), SGL_OK, "%s", r.error);
    cr_assert(strstr(r.result, "\"value\":[70,40,3,2]"), "%s", r.result);
    run_done(&r);
    Program *p = compile(src);
    cr_assert_eq(reload(p), 0, "%s", ERR);
}

/* ---- the fuzzer's reproducers ---- */

static void quiet(void *ud, const char *s, size_t n) { (void)ud, (void)s, (void)n; }

Test(sglc_verify, fuzz_regressions_load_or_fail_cleanly)
{
    DIR *d = opendir("tests/fuzz/sglc_regress");
    if (!d) return;
    Run r;
    run_init(&r, NULL);
    sgl_vm_set_output(r.vm, quiet, NULL);
    struct dirent *e;
    int seen = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "tests/fuzz/sglc_regress/%s", e->d_name);
        FILE *fp = fopen(path, "rb");
        cr_assert(fp, "%s", path);
        unsigned char body[1 << 16];
        size_t n = fread(body, 1, sizeof body, fp);
        fclose(fp);
        /* each file is a .sglc body, as the fuzzer feeds it */
        size_t len;
        unsigned char *buf = wrap_body(body, n, &len);
        char *tmp = write_temp(buf, len);
        free(buf);
        sgl_program *prog = NULL;
        if (sgl_program_load(r.vm, tmp, &prog) == SGL_OK) {
            char *res = NULL;
            sgl_run(r.vm, prog, NULL, NULL, &res);
            free(res);
            sgl_program_free(prog);
        } else {
            cr_assert(strstr(sgl_last_error(r.vm), "sglc") || strstr(sgl_last_error(r.vm), "bad bytecode"), "%s: %s",
                      path, sgl_last_error(r.vm));
        }
        unlink(tmp);
        free(tmp);
        seen++;
    }
    closedir(d);
    cr_assert_gt(seen, 0);
    run_done(&r);
}
