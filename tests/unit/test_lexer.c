/* tests/unit/test_lexer.c — the tokenizer, table-driven: source in, token
 * names out (with their text where it matters), or the error and where.
 * Also checks that the copies of the keyword list that cannot include
 * lang/keywords.h (lang/parser.y, LANGUAGE.md §2) agree with it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/keywords.h"
#include "lang/lexer.h"
#include "parser.h"

static const char *token_name(int code) {
    switch (code) {
#define N(x) case TK_##x: return #x;
    N(NL) N(SEMI) N(LBRACE) N(RBRACE) N(LPAREN) N(LPAREN_CALL) N(RPAREN) N(LBRACKET)
    N(LBRACKET_INDEX) N(RBRACKET) N(COMMA) N(COLON) N(DOT) N(DOTDOT) N(QUESTION) N(ASSIGN)
    N(PLUS_ASSIGN) N(MINUS_ASSIGN) N(STAR_ASSIGN) N(SLASH_ASSIGN) N(PLUS) N(MINUS) N(STAR)
    N(SLASH) N(PERCENT) N(EQ) N(NE) N(LT) N(LE) N(GT) N(GE) N(IDENT) N(INT) N(FLOAT)
    N(STRING) N(REGEX) N(STR_HEAD) N(STR_MID) N(STR_TAIL) N(GRAMMAR_BODY)
#define KW_NAME(text, tok, as_name) N(tok)
    SGL_KEYWORDS(KW_NAME)
#undef KW_NAME
#undef N
    default: return "?";
    }
}

/* Lex the whole input: "NAME NAME(text) ..." or "error L:C message". */
static char *lex_all(const char *src) {
    size_t len = strlen(src);
    int *starts;
    int nlines = lex_line_starts(src, len, &starts);
    cr_assert(nlines > 0);
    Lexer *lx = malloc(sizeof *lx);
    lex_init(lx, src, len, starts, nlines);
    size_t cap = 4096, n = 0;
    char *out = malloc(cap);
    out[0] = '\0';
    for (;;) {
        LexToken t;
        int code = lex_next(lx, &t);
        if (code < 0) {
            n += (size_t)snprintf(out + n, cap - n, "%serror %d:%d %s%s", n ? " " : "",
                                  lx->err_line, lx->err_col, lx->err,
                                  lx->err_at_eof ? " [eof]" : "");
            break;
        }
        if (code == 0) break;
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? " " : "", token_name(code));
        switch (code) {
        case TK_IDENT: case TK_STRING: case TK_REGEX: case TK_STR_HEAD: case TK_STR_MID:
        case TK_STR_TAIL: case TK_GRAMMAR_BODY:
            n += (size_t)snprintf(out + n, cap - n, "(%.*s)", (int)t.n, t.s);
            break;
        case TK_INT: n += (size_t)snprintf(out + n, cap - n, "(%lld)", (long long)t.ival); break;
        case TK_FLOAT: n += (size_t)snprintf(out + n, cap - n, "(%g)", t.fval); break;
        default: break;
        }
    }
    free(lx);
    free(starts);
    return out;
}

typedef struct {
    const char *src, *want;
} Case;

static void run_cases(const Case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *got = lex_all(cases[i].src);
        cr_expect_str_eq(got, cases[i].want, "source: %s\n  got:  %s\n  want: %s", cases[i].src, got, cases[i].want);
        free(got);
    }
}

#define RUN(cases) run_cases(cases, sizeof cases / sizeof cases[0])

Test(lexer, basic_tokens) {
    static const Case cases[] = {
        {"", ""},
        {"x", "IDENT(x)"},
        {"_a9 b", "IDENT(_a9) IDENT(b)"},
        {"fnord iffy", "IDENT(fnord) IDENT(iffy)"},
        {"+ - * / % == != < <= > >= = += -= *= /= .. . , : ; ?",
         "PLUS MINUS STAR SLASH PERCENT EQ NE LT LE GT GE ASSIGN PLUS_ASSIGN MINUS_ASSIGN "
         "STAR_ASSIGN SLASH_ASSIGN DOTDOT DOT COMMA COLON SEMI QUESTION"},
        {"a.user", "IDENT(a) DOT IDENT(user)"},
    };
    RUN(cases);
}

/* ---- keywords: lang/keywords.h and its copies ---- */

static const struct {
    const char *text, *token;
    int as_name;
} keyword_list[] = {
#define KW_ROW(text, tok, as_name) {text, #tok, as_name},
    SGL_KEYWORDS(KW_ROW)
#undef KW_ROW
};

Test(lexer, every_keyword) {
    char src[64], want[96];
    for (int i = 0; i < SGL_KEYWORD_COUNT; i++) {
        const char *kw = keyword_list[i].text;
        snprintf(src, sizeof src, "%s x.%s %sx", kw, kw, kw);
        snprintf(want, sizeof want, "%s IDENT(x) DOT IDENT(%s) IDENT(%sx)", keyword_list[i].token, kw, kw);
        char *got = lex_all(src);
        cr_expect_str_eq(got, want, "source: %s", src);
        free(got);
    }
}

static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s (tests run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

static int word_char(char c) { return c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }

/* Appends the words of s[0..n) (runs of [A-Za-z_]) to out, space-separated. */
static void words(const char *s, size_t n, char *out, size_t cap) {
    for (size_t i = 0; i < n;) {
        if (!word_char(s[i])) { i++; continue; }
        size_t j = i;
        while (j < n && word_char(s[j])) j++;
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%.*s", len ? " " : "", (int)(j - i), s + i);
        i = j;
    }
}

Test(lexer, parser_and_reference_list_the_same_keywords) {
    char want_tokens[512] = "", want_names[512] = "", want_text[512] = "";
    for (int i = 0; i < SGL_KEYWORD_COUNT; i++) {
        words(keyword_list[i].token, strlen(keyword_list[i].token), want_tokens, sizeof want_tokens);
        if (keyword_list[i].as_name)
            words(keyword_list[i].token, strlen(keyword_list[i].token), want_names, sizeof want_names);
        words(keyword_list[i].text, strlen(keyword_list[i].text), want_text, sizeof want_text);
    }

    /* parser.y: the %token statements, in order; the keywords follow GRAMMAR_BODY */
    char *y = read_file("lang/parser.y");
    char tokens[2048] = "";
    for (char *p = y; (p = strstr(p, "\n%token ")) != NULL;) {
        p += 8;
        char *end = strchr(p, '.');
        cr_assert_not_null(end);
        words(p, (size_t)(end - p), tokens, sizeof tokens);
        p = end;
    }
    char *after = strstr(tokens, "GRAMMAR_BODY ");
    cr_assert_not_null(after, "parser.y: no GRAMMAR_BODY token");
    cr_expect_str_eq(after + strlen("GRAMMAR_BODY "), want_tokens, "parser.y's keyword %%token line");

    /* parser.y: `keyword(A) ::= TOKEN(T).`, the keywords that stand for names */
    char names[1024] = "";
    for (char *p = y; (p = strstr(p, "\nkeyword(A) ::= ")) != NULL;) {
        p += strlen("\nkeyword(A) ::= ");
        words(p, strcspn(p, "("), names, sizeof names);
    }
    cr_expect_str_eq(names, want_names, "parser.y's keyword nonterminal");
    free(y);

    /* LANGUAGE.md §2: "Keywords: `fn let ...`." */
    char *md = read_file("lang/LANGUAGE.md");
    char *k = strstr(md, "Keywords: `");
    cr_assert_not_null(k, "LANGUAGE.md: no keyword list");
    k += strlen("Keywords: `");
    char text[512] = "";
    words(k, strcspn(k, "`"), text, sizeof text);
    cr_expect_str_eq(text, want_text, "LANGUAGE.md §2's keyword list");
    free(md);
}

Test(lexer, numbers) {
    static const Case cases[] = {
        {"42", "INT(42)"},
        {"0x2a 0X2A", "INT(42) INT(42)"},
        {"3.5 1e-3 2E3 123.0e-2", "FLOAT(3.5) FLOAT(0.001) FLOAT(2000) FLOAT(1.23)"},
        {"0..2", "INT(0) DOTDOT INT(2)"},
        {"9223372036854775807", "INT(9223372036854775807)"},
        {"x = 9223372036854775808", "IDENT(x) ASSIGN error 1:5 integer literal too large "
                                    "(the limit is 9223372036854775807)"},
        {"0x8000000000000000", "error 1:1 integer literal too large (the limit is "
                               "9223372036854775807)"},
        {"12abc", "error 1:1 invalid number literal"},
        {"1e999", "error 1:1 float literal out of range"},
        {"0x", "error 1:1 invalid number literal"},
    };
    RUN(cases);
}

Test(lexer, newlines) {
    static const Case cases[] = {
        {"a\nb", "IDENT(a) NL IDENT(b)"},
        {"a\n\n\n# c\nb\n", "IDENT(a) NL IDENT(b) NL"},
        {"\n\na", "IDENT(a)"},
        {"a +\nb", "IDENT(a) PLUS IDENT(b)"},
        {"f(a,\nb)", "IDENT(f) LPAREN_CALL IDENT(a) COMMA IDENT(b) RPAREN"},
        {"[a\n]", "LBRACKET IDENT(a) RBRACKET"},
        {"(a\n+ b)", "LPAREN IDENT(a) PLUS IDENT(b) RPAREN"},
        {"{\na\nb\n}", "LBRACE IDENT(a) NL IDENT(b) RBRACE"},
        {"}\nelse {", "RBRACE ELSE LBRACE"},
        {"} \n # x\n  else", "RBRACE ELSE"},
        {"a; b", "IDENT(a) SEMI IDENT(b)"},
        {"f(fn() {\na\nb\n})", "IDENT(f) LPAREN_CALL FN LPAREN RPAREN LBRACE IDENT(a) NL "
                               "IDENT(b) RBRACE RPAREN"},
        {"x = a ?\nb :\nc", "IDENT(x) ASSIGN IDENT(a) QUESTION IDENT(b) COLON IDENT(c)"},
        {"a and\nb", "IDENT(a) AND IDENT(b)"},
        {"return\nx", "RETURN NL IDENT(x)"},
        {"#!/usr/bin/env sgl\nx", "IDENT(x)"},
        {"a\r\nb", "IDENT(a) NL IDENT(b)"},
        {"\xEF\xBB\xBFx", "IDENT(x)"},
    };
    RUN(cases);
}

Test(lexer, calls_and_pieces) {
    static const Case cases[] = {
        {"f(x)", "IDENT(f) LPAREN_CALL IDENT(x) RPAREN"},
        {"f (x)", "IDENT(f) LPAREN IDENT(x) RPAREN"},
        {"a[0]", "IDENT(a) LBRACKET_INDEX INT(0) RBRACKET"},
        {"a [0]", "IDENT(a) LBRACKET INT(0) RBRACKET"},
        {"\"s\"[0]", "STRING(s) LBRACKET_INDEX INT(0) RBRACKET"},
        {"f(x)(y)", "IDENT(f) LPAREN_CALL IDENT(x) RPAREN LPAREN_CALL IDENT(y) RPAREN"},
        {"if(x)", "IF LPAREN IDENT(x) RPAREN"},
        {"return[1]", "RETURN LBRACKET INT(1) RBRACKET"},
        {"{}[\"k\"]", "LBRACE RBRACE LBRACKET_INDEX STRING(k) RBRACKET"},
    };
    RUN(cases);
}

Test(lexer, strings) {
    static const Case cases[] = {
        {"\"abc\"", "STRING(abc)"},
        {"\"\"", "STRING()"},
        {"\"a\\n\\t\\r\\\\\\\"\\$b\"", "STRING(a\\n\\t\\r\\\\\\\"\\$b)"},
        {"\"\\u{1F600}\"", "STRING(\\u{1F600})"},
        {"\"$ and $x\"", "STRING($ and $x)"},
        {"\"a${x}b\"", "STR_HEAD(a) IDENT(x) STR_TAIL(b)"},
        {"\"${x}\"", "STR_HEAD() IDENT(x) STR_TAIL()"},
        {"\"a${x}b${y}c\"", "STR_HEAD(a) IDENT(x) STR_MID(b) IDENT(y) STR_TAIL(c)"},
        {"\"${ {\"k\": 1}[\"k\"] }\"", "STR_HEAD() LBRACE STRING(k) COLON INT(1) RBRACE "
                                      "LBRACKET_INDEX STRING(k) RBRACKET STR_TAIL()"},
        {"\"Answer: ${gen(\"answer\", stop: \"\\n\")}\\n\"",
         "STR_HEAD(Answer: ) IDENT(gen) LPAREN_CALL STRING(answer) COMMA IDENT(stop) COLON "
         "STRING(\\n) RPAREN STR_TAIL(\\n)"},
        {"\"n ${\"x${y}\"}!\"", "STR_HEAD(n ) STR_HEAD(x) IDENT(y) STR_TAIL() STR_TAIL(!)"},
        {"\"${a\n+ b}\"", "STR_HEAD() IDENT(a) PLUS IDENT(b) STR_TAIL()"},
        {"r\"a\\n${x}\"", "STRING(a\\n${x})"},
        {"r\"a\\\"b\"", "STRING(a\\\"b)"},
        {"re\"[a-z]+\\d\"", "REGEX([a-z]+\\d)"},
        {"rx", "IDENT(rx)"},
        {"\"\"\"a\n\"b\"\n\"\"\"", "STRING(a\n\"b\"\n)"},
        {"\"\"\"say \"hi\"\"\"\"", "STRING(say \"hi\")"},
        {"\"\"\"a ${x} b\"\"\"", "STR_HEAD(a ) IDENT(x) STR_TAIL( b)"},
        {"r\"\"\"a\\\"\"\"\"", "STRING(a\\\")"},
    };
    RUN(cases);
}

Test(lexer, grammar_blocks) {
    static const Case cases[] = {
        {"grammar g { root ::= \"a\" }", "GRAMMAR IDENT(g) GRAMMAR_BODY( root ::= \"a\" )"},
        {"grammar g {\n r ::= \"}\" [}{] # }\n x{2}\n}\nx",
         "GRAMMAR IDENT(g) GRAMMAR_BODY(\n r ::= \"}\" [}{] # }\n x{2}\n) NL IDENT(x)"},
        {"grammar g\n{a}", "GRAMMAR IDENT(g) GRAMMAR_BODY(a)"},
        {"grammar g { a", "GRAMMAR IDENT(g) error 1:11 unterminated grammar block (no matching "
                          "'}') [eof]"},
        {"x.grammar {", "IDENT(x) DOT IDENT(grammar) LBRACE"},
    };
    RUN(cases);
}

Test(lexer, errors) {
    static const Case cases[] = {
        {"a @", "IDENT(a) error 1:3 unexpected character '@'"},
        /* the newline's look-ahead finds the error before the NL is handed out */
        {"x\n  !", "IDENT(x) error 2:3 unexpected character '!'"},
        {"\xC3\xA9", "error 1:1 unexpected character U+00E9"},
        {"\xFF", "error 1:1 unexpected byte 0xFF"},
        {"x = \"abc", "IDENT(x) ASSIGN error 1:5 unterminated string"},
        {"print(\"abc)\n}", "IDENT(print) LPAREN_CALL error 1:7 unterminated string"},
        {"\"a\\qb\"", "error 1:3 invalid escape sequence '\\q'"},
        {"\"\\u{110000}\"", "error 1:2 invalid code point in '\\u{...}' escape"},
        {"\"\\u{D800}\"", "error 1:2 invalid code point in '\\u{...}' escape"},
        {"\"\\u{}\"", "error 1:2 invalid escape sequence '\\u'"},
        {"\"\"\"abc\n", "error 1:1 unterminated triple-quoted string [eof]"},
        {"  \"a ${b", "STR_HEAD(a ) IDENT(b) error 1:3 unterminated string [eof]"},
        {"r\"abc\n\"", "error 1:1 unterminated string"},
        {"x\0y", "IDENT(x)"},
        {"re\"\"\"a\"\"\"", "error 1:1 a regex literal cannot be triple-quoted (write re\"...\" "
                            "with \\\" for a quote)"},
    };
    RUN(cases);
}

Test(lexer, nul_byte_inside_source) {
    /* A NUL before the end is an ordinary (stray) byte, not the end. */
    const char src[] = "x \0 y";
    int *starts;
    int nlines = lex_line_starts(src, sizeof src - 1, &starts);
    Lexer lx;
    lex_init(&lx, src, sizeof src - 1, starts, nlines);
    LexToken t;
    cr_expect_eq(lex_next(&lx, &t), TK_IDENT);
    cr_expect_eq(lex_next(&lx, &t), -1);
    cr_expect_str_eq(lx.err, "unexpected byte 0x00");
    cr_expect_eq(lx.err_col, 3);
    free(starts);
}

Test(lexer, positions) {
    const char *src = "let x = 1\n  \"s${y}t\"";
    int *starts;
    int nlines = lex_line_starts(src, strlen(src), &starts);
    Lexer lx;
    lex_init(&lx, src, strlen(src), starts, nlines);
    static const int want[][3] = {
        {TK_LET, 1, 1}, {TK_IDENT, 1, 5}, {TK_ASSIGN, 1, 7}, {TK_INT, 1, 9}, {TK_NL, 1, 10},
        {TK_STR_HEAD, 2, 3}, {TK_IDENT, 2, 7}, {TK_STR_TAIL, 2, 9}, {0, 2, 11},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        LexToken t;
        int code = lex_next(&lx, &t);
        cr_expect_eq(code, want[i][0], "token %zu: %s", i, token_name(code));
        cr_expect_eq(t.line, want[i][1], "token %zu line", i);
        cr_expect_eq(t.col, want[i][2], "token %zu col", i);
    }
    free(starts);
}
