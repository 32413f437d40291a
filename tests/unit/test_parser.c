/* tests/unit/test_parser.c — the grammar: snippets in, the tree as an
 * S-expression (ast_dump) out; every example of LANGUAGE.md parses; syntax
 * errors name the right place. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "lang/ast_util.h"

typedef struct {
    const char *src, *want;
} Case;

/* The dump of the program's statements (without the "(program " wrapper),
 * or "error L:C message". */
static char *parse_dump(const char *src) {
    AstTree tree;
    Diag d = {0};
    if (parse_source("t.sgl", src, strlen(src), &tree, &d) != 0) {
        char *out = malloc(512);
        snprintf(out, 512, "error %d:%d %s%s", d.line, d.col, d.message,
                 d.at_eof ? " [eof]" : "");
        diag_clear(&d);
        return out;
    }
    char *full = ast_dump(tree.root);
    ast_free(&tree);
    cr_assert_not_null(full);
    size_t skip = strlen("(program");
    size_t n = strlen(full);
    char *body = strndup(full + skip + (n > skip + 1 ? 1 : 0), n - skip - (n > skip + 1 ? 2 : 1));
    free(full);
    return body;
}

static void run_cases(const Case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *got = parse_dump(cases[i].src);
        cr_expect_str_eq(got, cases[i].want, "source: %s\n  got:  %s\n  want: %s", cases[i].src,
                         got, cases[i].want);
        free(got);
    }
}

#define RUN(cases) run_cases(cases, sizeof cases / sizeof cases[0])

Test(parser, literals) {
    static const Case cases[] = {
        {"", ""},
        {"nil true false", "(expr nil true false)"},
        {"42; 3.5; 0x10", "(expr 42) (expr 3.5) (expr 16)"},
        {"\"a\\tb\\u{e9}\"", "(expr \"a\\tb\xC3\xA9\")"},
        {"r\"\\d\"", "(expr \"\\\\d\")"},
        {"re\"\\d+\"", "(expr (regex \"\\\\d+\"))"},
        {"[1, \"a\", [true, nil]]", "(expr (list 1 \"a\" (list true nil)))"},
        {"[]; [1,]", "(expr (list)) (expr (list 1))"},
        {"x = {\"a\": 1, b: 2, (k): 3, 4: 5, if: 6,}",
         "(= x (map (pair \"a\" 1) (pair \"b\" 2) (pair k 3) (pair 4 5) (pair \"if\" 6)))"},
        {"x = {}", "(= x (map))"},
        {"x = {\n  a: 1,\n  b: [2,\n 3]\n}", "(= x (map (pair \"a\" 1) (pair \"b\" (list 2 3))))"},
    };
    RUN(cases);
}

Test(parser, strings_and_interpolation) {
    static const Case cases[] = {
        {"\"a${x}b\"", "(expr (interp \"a\" x \"b\"))"},
        {"\"${x}\"", "(expr (interp x))"},
        {"\"${x}${y}\"", "(expr (interp x y))"},
        {"\"Answer: ${gen(\"answer\", stop: \"\\n\")}\\n\"",
         "(expr (interp \"Answer: \" (call gen \"answer\" (stop: \"\\n\")) \"\\n\"))"},
        {"\"n ${\"x\" + \"${y}\"}\"", "(expr (interp \"n \" (+ \"x\" (interp y))))"},
        {"\"\\${x} \\$ $\"", "(expr \"${x} $ $\")"},
        {"\"${ {\"k\": 1}[\"k\"] }\"", "(expr (interp (index (map (pair \"k\" 1)) \"k\")))"},
        /* triple quotes: opening line break and closing line dropped, the
         * closing quotes' indentation removed */
        {"t = \"\"\"\n    first\n      second\n    \"\"\"", "(= t \"first\\n  second\")"},
        {"t = \"\"\"one\"\"\"", "(= t \"one\")"},
        {"t = \"\"\"\n    a ${b}\n    c\n    \"\"\"", "(= t (interp \"a \" b \"\\nc\"))"},
        {"t = \"\"\"\n    a\n    ${b}\n    \"\"\"", "(= t (interp \"a\\n\" b))"},
        {"t = \"\"\"\n  x\\n  y\n  \"\"\"", "(= t \"x\\n  y\")"},
        {"t = \"\"\"\n    a\n  b\n\n    \"\"\"", "(= t \"a\\nb\\n\")"},
        {"t = \"\"\"\n    \"\"\"", "(= t \"\")"},
        {"t = \"\"\"\"\"\"", "(= t \"\")"},
        {"t = \"\"\"\n  a\n  b\"\"\"", "(= t \"  a\\n  b\")"},
        {"t = r\"\"\"\n  \\d\n  \"\"\"", "(= t \"\\\\d\")"},
        {"t = \"\"\"  \n  a\n  \"\"\"", "(= t \"a\")"},
        {"t = \"\"\"  \"\"\"", "(= t \"  \")"},
        {"t = \"\"\"\r\n    a\r\n      b\r\n    \"\"\"\r\nx", "(= t \"a\\n  b\") (expr x)"},
    };
    RUN(cases);
}

Test(parser, operators) {
    static const Case cases[] = {
        {"1 + 2 * 3", "(expr (+ 1 (* 2 3)))"},
        {"(1 + 2) * 3", "(expr (* (+ 1 2) 3))"},
        {"2 - 3 - 4", "(expr (- (- 2 3) 4))"},
        {"-2 * 3", "(expr (* (neg 2) 3))"},
        {"-x.y[1]", "(expr (neg (index (. x y) 1)))"},
        {"a % b / c", "(expr (/ (% a b) c))"},
        {"not a == b", "(expr (not (== a b)))"},
        {"a or b and not c", "(expr (or a (and b (not c))))"},
        {"a ? b : c ? d : e", "(expr (? a b (? c d e)))"},
        {"x = a > b ? \"a\" : \"b\"", "(= x (? (> a b) \"a\" \"b\"))"},
        {"a in b", "(expr (in a b))"},
        {"i + 1 .. n * 2", "(expr (.. (+ i 1) (* n 2)))"},
        {"a < b == c", "error 1:7 unexpected '=='"},
        {"a != b; a <= b; a >= b", "(expr (!= a b)) (expr (<= a b)) (expr (>= a b))"},
        {"f(x)(y)[0].z", "(expr (. (index (call (call f x) y) 0) z))"},
        {"f(1, excited: true)", "(expr (call f 1 (excited: true)))"},
        {"gen(\"g\", grammar: g, regex: re\"x\")",
         "(expr (call gen \"g\" (grammar: g) (regex: (regex \"x\"))))"},
        {"f(\n  a,\n  b: 2,\n)", "(expr (call f a (b: 2)))"},
        {"f(c ? a : b)", "(expr (call f (? c a b)))"},
        {"state.user", "(expr (. state user))"},
    };
    RUN(cases);
}

Test(parser, pieces) {
    static const Case cases[] = {
        {"\"The capital of France is\" gen(\"city\", max_tokens: 4, stop: \".\") \".\"",
         "(expr \"The capital of France is\" (call gen \"city\" (max_tokens: 4) (stop: \".\")) "
         "\".\")"},
        {"\" A\" \"B\" nil \"C\"", "(expr \" A\" \"B\" nil \"C\")"},
        {"item(1) item(2)", "(expr (call item 1) (call item 2))"},
        {"\"a\" (b + c) [1]", "(expr \"a\" (+ b c) (list 1))"},
        {"\"In summary, \" gen(\"summary\", max_tokens: 64)",
         "(expr \"In summary, \" (call gen \"summary\" (max_tokens: 64)))"},
        {"a b.c d[0]", "(expr a (. b c) (index d 0))"},
        {"\"x\" + \"y\" \"z\"", "error 1:11 unexpected string"},
        {"x = f (y)", "error 1:7 unexpected '(' (a call's '(' must follow the function without "
                      "a space)"},
    };
    RUN(cases);
}

Test(parser, statements) {
    static const Case cases[] = {
        {"let x = 1", "(let x 1)"},
        {"x = 1; x += 2; x -= 3; x *= 4; x /= 5",
         "(= x 1) (+= x 2) (-= x 3) (*= x 4) (/= x 5)"},
        {"a[i] += 1\nm.k = 2", "(+= (index a i) 1) (= (. m k) 2)"},
        {"if a { b } else if c { d } else { e }",
         "(if a (block (expr b)) (if c (block (expr d)) (block (expr e))))"},
        {"if a {\n  b\n}\nelse {\n  c\n}", "(if a (block (expr b)) (block (expr c)))"},
        {"if a { b }\nc", "(if a (block (expr b))) (expr c)"},
        {"while x < 3 { x += 1; if x { break } else { continue } }",
         "(while (< x 3) (block (+= x 1) (if x (block (break)) (block (continue)))))"},
        {"for k in {\"x\": 1} { print(k) }",
         "(for k (map (pair \"x\" 1)) (block (expr (call print k))))"},
        {"for j in 2..5 { }", "(for j (.. 2 5) (block))"},
        {"fn f() { return }\nfn g() { return 1 }",
         "(fn f () (block (return))) (fn g () (block (return 1)))"},
        {"fn greet(name, excited = false) { return \"Hello, \" + name }",
         "(fn greet (name (excited false)) (block (return (+ \"Hello, \" name))))"},
        {"fn f (a, b = a + 1,) {}", "(fn f (a (b (+ a 1))) (block))"},
        {"let square = fn(x) { return x * x }",
         "(let square (lambda (x) (block (return (* x x)))))"},
        {"fn(x) { x }(3)", "(expr (call (lambda (x) (block (expr x))) 3))"},
        {"import \"std/chat\"\nimport \"./tools.sgl\" as tools",
         "(import \"std/chat\") (import \"./tools.sgl\" as tools)"},
        {"\n\n;;\nx\n\n;\n", "(expr x)"},
        {"# only a comment", ""},
    };
    RUN(cases);
}

Test(parser, roles_fork_grammar) {
    static const Case cases[] = {
        {"system { \"You are a helpful assistant.\" }",
         "(system (block (expr \"You are a helpful assistant.\")))"},
        {"user question", "(user question)"},
        {"user \" one-line \" question", "(user \" one-line \" question)"},
        {"assistant { gen(\"answer\", max_tokens: 256) }",
         "(assistant (block (expr (call gen \"answer\" (max_tokens: 256)))))"},
        {"user {a: 1}", "error 1:8 unexpected ':'"},
        {"let b = fork i in 0..3 { \"Idea ${i}: \" gen(\"idea\") }",
         "(let b (fork i (.. 0 3) (block (expr (interp \"Idea \" i \": \") (call gen \"idea\")))))"},
        {"fork x in xs { x }", "(expr (fork x xs (block (expr x))))"},
        {"fork x in 2 { }[0].text", "(expr (. (index (fork x 2 (block)) 0) text))"},
        {"grammar arith {\n  root ::= [0-9]+ \"}\"\n}\n\"x\" gen(\"c\", grammar: arith)",
         "(grammar arith \"\\n  root ::= [0-9]+ \\\"}\\\"\\n\") "
         "(expr \"x\" (call gen \"c\" (grammar: arith)))"},
    };
    RUN(cases);
}

Test(parser, errors) {
    static const Case cases[] = {
        {"fn main() {\n    let = 3\n}", "error 2:9 unexpected '='"},
        {"fn main() {\n    print(\"abc)\n}", "error 2:11 unterminated string"},
        {"fn main() {", "error 1:12 unexpected end of input [eof]"},
        {"f(1,", "error 1:5 unexpected end of input [eof]"},
        {"x = \"\"\"\nabc", "error 1:5 unterminated triple-quoted string [eof]"},
        {"x = \"a${b\n+ c", "error 1:5 unterminated string [eof]"},
        {"x = \"${a +}\"", "error 1:11 unexpected '}'"},
        {"x = \"a${}\"", "error 1:9 unexpected '}'"},
        {"1 = 2", "error 1:1 cannot assign to this expression"},
        {"f() = 2", "error 1:1 cannot assign to this expression"},
        {"let x = 1 let y = 2", "error 1:11 unexpected keyword 'let'"},
        {"if x { }\nelse", "error 2:5 unexpected end of input [eof]"},
        {"x = )", "error 1:5 unexpected ')'"},
        {"x = 1\n  y = @", "error 2:7 unexpected character '@'"},
        {"return return", "error 1:8 unexpected keyword 'return'"},
        {"a.1", "error 1:3 unexpected number 1"},
        {"let x = \"\\z\"", "error 1:10 invalid escape sequence '\\z'"},
        {"x = 99999999999999999999", "error 1:5 integer literal too large (the limit is "
                                     "9223372036854775807)"},
        {"grammar { }", "error 1:9 unexpected '{'"},
        {"import x", "error 1:8 unexpected identifier 'x'"},
    };
    RUN(cases);
}

Test(parser, positions) {
    const char *src = "fn main(a) {\n  x = f(1, k: 2) + y[0].z\n}";
    AstTree tree;
    Diag d = {0};
    cr_assert_eq(parse_source("p.sgl", src, strlen(src), &tree, &d), 0);
    cr_expect_str_eq(tree.file, "p.sgl");
    AstNode *fn = tree.root->list.items[0];
    cr_expect_eq(fn->kind, AST_FN);
    cr_expect_eq(fn->line, 1);
    cr_expect_eq(fn->col, 1);
    cr_expect_eq(fn->list.items[0]->col, 9);            /* param a */
    cr_expect_eq(fn->a->kind, AST_BLOCK);
    cr_expect_eq(fn->a->col, 12);
    AstNode *as = fn->a->list.items[0];
    cr_expect_eq(as->kind, AST_ASSIGN);
    cr_expect_eq(as->line, 2);
    cr_expect_eq(as->col, 3);
    AstNode *add = as->b;
    cr_expect_eq(add->kind, AST_BINARY);
    cr_expect_eq(add->op, AST_OP_ADD);
    cr_expect_eq(add->col, 18);                         /* the operator */
    AstNode *call = add->a;
    cr_expect_eq(call->kind, AST_CALL);
    cr_expect_eq(call->col, 8);                         /* the ( */
    cr_expect_eq(call->list.items[1]->kind, AST_ARG);
    cr_expect_str_eq(call->list.items[1]->name, "k");
    cr_expect_eq(call->list.items[1]->col, 12);
    AstNode *field = add->b;
    cr_expect_eq(field->kind, AST_FIELD);
    cr_expect_eq(field->col, 20);                       /* first token: y */
    cr_expect_eq(field->a->kind, AST_INDEX);
    cr_expect_eq(field->a->col, 20);
    ast_free(&tree);

    const char *g = "x = 1\ngrammar  g {root ::= \"a\"}\nx = re\"a+\"";
    cr_assert_eq(parse_source("g.sgl", g, strlen(g), &tree, &d), 0);
    AstNode *gr = tree.root->list.items[1];
    cr_expect_eq(gr->kind, AST_GRAMMAR);
    cr_expect_eq(gr->line, 2);
    cr_expect_eq(gr->col, 1);
    cr_expect_eq(gr->body_line, 2);
    cr_expect_eq(gr->body_col, 13);
    cr_expect_eq(gr->str_len, strlen("root ::= \"a\""));
    AstNode *re = tree.root->list.items[2]->b;
    cr_expect_eq(re->kind, AST_REGEX);
    cr_expect_eq(re->col, 5);
    ast_free(&tree);
}

Test(parser, string_with_nul_byte) {
    const char src[] = "x = \"a\0b\"";
    AstTree tree;
    Diag d = {0};
    cr_assert_eq(parse_source("n.sgl", src, sizeof src - 1, &tree, &d), 0);
    AstNode *s = tree.root->list.items[0]->b;
    cr_expect_eq(s->str_len, 3);
    cr_expect_eq(memcmp(s->str, "a\0b", 4), 0);
    ast_free(&tree);
}

Test(parser, diag_format) {
    AstTree tree;
    Diag d = {0};
    const char *src = "fn main() {\n\tlet = 3\n}\n";
    cr_assert_eq(parse_source("e.sgl", src, strlen(src), &tree, &d), -1);
    cr_expect_null(tree.root);
    char *s = diag_format(&d);
    cr_expect_str_eq(s, "e.sgl:2:6: error: unexpected '='\n\tlet = 3\n\t    ^\n");
    free(s);
    diag_clear(&d);

    const char *u = "x = \"\xC3\xA9\xC3\xA9\" @";
    cr_assert_eq(parse_source("u.sgl", u, strlen(u), &tree, &d), -1);
    s = diag_format(&d);
    cr_expect_str_eq(s, "u.sgl:1:12: error: unexpected character '@'\n"
                        "x = \"\xC3\xA9\xC3\xA9\" @\n         ^\n");
    free(s);
    diag_clear(&d);

    diag_set(&d, "f.sgl", 0, 0, NULL, 0, "cannot open: %s", "nope");
    s = diag_format(&d);
    cr_expect_str_eq(s, "f.sgl: error: cannot open: nope\n");
    free(s);
    diag_clear(&d);
}

Test(parser, nesting_limits) {
    /* deep brackets: refused with an error, never a crash */
    size_t n = 5000;
    char *src = malloc(2 * n + 8);
    strcpy(src, "x = ");
    for (size_t i = 0; i < n; i++) src[4 + i] = '(';
    src[4 + n] = '1';
    for (size_t i = 0; i < n; i++) src[5 + n + i] = ')';
    src[5 + 2 * n] = '\0';
    AstTree tree;
    Diag d = {0};
    cr_expect_eq(parse_source("d.sgl", src, strlen(src), &tree, &d), -1);
    cr_expect(strstr(d.message, "nested too deeply") != NULL, "%s", d.message);
    diag_clear(&d);
    /* a long flat chain of operators makes a deep tree */
    free(src);
    src = malloc(4 * n + 8);
    strcpy(src, "x = 1");
    for (size_t i = 0; i < n; i++) strcat(src, "+1");
    cr_expect_eq(parse_source("d.sgl", src, strlen(src), &tree, &d), -1);
    cr_expect(strstr(d.message, "nested too deeply") != NULL, "%s", d.message);
    diag_clear(&d);
    free(src);
}

/* ---- every example in LANGUAGE.md parses ---------------------------------- */

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    *len = fread(buf, 1, (size_t)n, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

Test(parser, language_reference_examples) {
    size_t len;
    char *doc = read_file("lang/LANGUAGE.md", &len);
    cr_assert_not_null(doc, "run from the repository root (lang/LANGUAGE.md)");
    int examples = 0;
    const char *p = doc;
    while ((p = strstr(p, "```sgl\n"))) {
        p += strlen("```sgl\n");
        const char *end = strstr(p, "```");
        cr_assert_not_null(end);
        int line = 1;
        for (const char *q = doc; q < p; q++) line += *q == '\n';
        AstTree tree;
        Diag d = {0};
        int rc = parse_source("LANGUAGE.md", p, (size_t)(end - p), &tree, &d);
        cr_expect_eq(rc, 0, "example at LANGUAGE.md:%d: %d:%d %s", line, d.line, d.col,
                     d.message ? d.message : "");
        if (rc == 0) ast_free(&tree);
        diag_clear(&d);
        examples++;
        p = end + 3;
    }
    cr_expect(examples >= 7, "found only %d examples", examples);
    free(doc);
}
