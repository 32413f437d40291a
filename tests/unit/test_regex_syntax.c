/* tests/unit/test_regex_syntax.c — the constraint regex subset (§9) and the
 * EBNF grammar checker: pattern in, tree (rx_dump) or error and column out. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_syntax.h"
#include "constrain/regex_syntax.h"

typedef struct {
    const char *src, *want;
} Case;

static char *rx_result(const char *src) {
    RxRegex re;
    int col = 0;
    char msg[200];
    if (rx_parse(src, strlen(src), &re, &col, msg, sizeof msg) != 0) {
        char *out = malloc(300);
        snprintf(out, 300, "error %d: %s", col, msg);
        cr_expect_null(re.root);
        return out;
    }
    char *d = rx_dump(re.root);
    rx_free(&re);
    return d;
}

static void run_cases(const Case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *got = rx_result(cases[i].src);
        cr_expect_str_eq(got, cases[i].want, "pattern: %s\n  got:  %s\n  want: %s", cases[i].src,
                         got, cases[i].want);
        int col;
        char msg[100];
        int ok = strncmp(cases[i].want, "error", 5) != 0;
        cr_expect_eq(rx_check(cases[i].src, strlen(cases[i].src), &col, msg, sizeof msg),
                     ok ? 0 : -1, "rx_check agrees: %s", cases[i].src);
        free(got);
    }
}

#define RUN(cases) run_cases(cases, sizeof cases / sizeof cases[0])

Test(regex, valid) {
    static const Case cases[] = {
        {"", "(empty)"},
        {"a", "(char 'a')"},
        {"ab", "(cat (char 'a') (char 'b'))"},
        {"a|b|", "(alt (char 'a') (char 'b') (empty))"},
        {"\xC3\xA9\xF0\x9F\x98\x80", "(cat (char U+00E9) (char U+1F600))"},
        {".", "(class U+0000-U+0009 U+000B-U+D7FF U+E000-U+10FFFF)"},
        {"[a-z]", "(class 'a'-'z')"},
        {"[a-cb-dx]", "(class 'a'-'d' 'x')"},
        {"[^\\x00-\\x{10FFFF}]", "(class)"},
        {"[^a]", "(class U+0000-'`' 'b'-U+D7FF U+E000-U+10FFFF)"},
        {"[]a]", "(class ']' 'a')"},
        {"[a-]", "(class '-' 'a')"},
        {"[\\d_]", "(class '0'-'9' '_')"},
        {"\\d", "(class '0'-'9')"},
        {"\\w", "(class '0'-'9' 'A'-'Z' '_' 'a'-'z')"},
        {"\\s", "(class U+0009-U+000D U+0020)"},
        {"\\D", "(class U+0000-'/' ':'-U+D7FF U+E000-U+10FFFF)"},
        {"[\\S]", "(class U+0000-U+0008 U+000E-U+001F '!'-U+D7FF U+E000-U+10FFFF)"},
        {"\\.\\*\\\\\\{\\}\\-\\/", "(cat (char '.') (char '*') (char U+005C) (char '{') "
                                  "(char '}') (char '-') (char '/'))"},
        {"\\n\\t\\x41\\u{1F600}\\u00e9\\x{41}", "(cat (char U+000A) (char U+0009) (char 'A') "
                                              "(char U+1F600) (char U+00E9) (char 'A'))"},
        {"a*b+c?", "(cat (rep 0 inf (char 'a')) (rep 1 inf (char 'b')) (rep 0 1 (char 'c')))"},
        {"a{3}b{2,}c{2,5}d{,4}", "(cat (rep 3 3 (char 'a')) (rep 2 inf (char 'b')) "
                                 "(rep 2 5 (char 'c')) (rep 0 4 (char 'd')))"},
        {"a*?", "(rep 0 inf (char 'a'))"},
        {"a{", "(cat (char 'a') (char '{'))"},
        {"a{x}", "(cat (char 'a') (char '{') (char 'x') (char '}'))"},
        {"(ab)+", "(rep 1 inf (group 1 (cat (char 'a') (char 'b'))))"},
        {"(?:ab)+", "(rep 1 inf (cat (char 'a') (char 'b')))"},
        {"(a(b))(c)", "(cat (group 1 (cat (char 'a') (group 2 (char 'b')))) (group 3 (char 'c')))"},
        {"()", "(group 1 (empty))"},
        {"^a$", "(char 'a')"},
        {"a\\$", "(cat (char 'a') (char '$'))"},
        {"[0-9]{3}-[0-9]{4}", "(cat (rep 3 3 (class '0'-'9')) (char '-') "
                              "(rep 4 4 (class '0'-'9')))"},
    };
    RUN(cases);
}

Test(regex, errors) {
    static const Case cases[] = {
        {"(ab", "error 1: missing ')' to close this group"},
        {"ab)", "error 3: unmatched ')'"},
        {"(a)\\1", "error 4: backreferences are not supported in constraint regexes"},
        {"\\k<x>", "error 1: backreferences are not supported in constraint regexes"},
        {"a(?=b)", "error 2: look-around is not supported in constraint regexes"},
        {"a(?!b)", "error 2: look-around is not supported in constraint regexes"},
        {"(?<=a)b", "error 1: look-around is not supported in constraint regexes"},
        {"(?<!a)b", "error 1: look-around is not supported in constraint regexes"},
        {"(?i)a", "error 1: unsupported group syntax '(?' (only '(?:' is allowed)"},
        {"*a", "error 1: nothing to repeat before '*'"},
        {"a|+", "error 3: nothing to repeat before '+'"},
        {"{2}", "error 1: nothing to repeat before '{'"},
        {"a**", "error 3: a quantifier cannot follow another (use a group)"},
        {"a*+", "error 3: possessive quantifiers are not supported"},
        {"a{1001}", "error 2: repetition count too large (the limit is 1000)"},
        {"a{99999999999999999999}", "error 2: repetition count too large (the limit is 1000)"},
        {"a{5,2}", "error 2: repetition range out of order"},
        {"[a-", "error 1: missing ']' to close this class"},
        {"[z-a]", "error 2: range out of order in class"},
        {"[\\d-z]", "error 4: a range cannot start or end with a class like \\d"},
        {"[[:alpha:]]", "error 2: POSIX classes like [:alpha:] are not supported"},
        {"a\\b", "error 2: '\\b' is not supported in constraint regexes (the regex always "
                 "matches the whole output)"},
        {"a^b", "error 2: '^' is only allowed at the start of the regex (it always matches the "
                "whole output)"},
        {"a$b", "error 2: '$' is only allowed at the end of the regex (it always matches the "
                "whole output)"},
        {"\\q", "error 1: unknown escape '\\q'"},
        {"ab\\", "error 3: trailing backslash"},
        {"\\x4", "error 1: malformed hex escape (expected 2 hex digits)"},
        {"\\u{110000}", "error 1: escape is not a Unicode scalar value"},
        {"\\u{D800}", "error 1: escape is not a Unicode scalar value"},
        {"\\p{L}", "error 1: Unicode properties ('\\p{...}') are not supported"},
        {"a\xFF", "error 2: invalid UTF-8 in regex"},
        {"\xC3", "error 1: invalid UTF-8 in regex"},
        {"\xED\xA0\x80", "error 1: invalid UTF-8 in regex"},
        {"\\01", "error 1: octal escapes are not supported (use \\x{...})"},
    };
    RUN(cases);
}

Test(regex, nesting_limit) {
    char src[512];
    int n = 0;
    for (int i = 0; i < 150; i++) src[n++] = '(';
    src[n++] = 'a';
    for (int i = 0; i < 150; i++) src[n++] = ')';
    src[n] = '\0';
    int col;
    char msg[100];
    cr_expect_eq(rx_check(src, (size_t)n, &col, msg, sizeof msg), -1);
    cr_expect_eq(col, RX_MAX_DEPTH + 1);
    cr_expect(strstr(msg, "nested too deeply") != NULL);
}

Test(regex, positions) {
    RxRegex re;
    int col;
    char msg[100];
    cr_assert_eq(rx_parse("ab|(c)*", 7, &re, &col, msg, sizeof msg), 0);
    cr_expect_eq(re.ngroups, 1);
    cr_expect_eq(re.root->kind, RX_ALT);
    cr_expect_eq(re.root->kids[0]->kind, RX_CONCAT);
    cr_expect_eq(re.root->kids[0]->kids[1]->pos, 1);
    RxNode *rep = re.root->kids[1];
    cr_expect_eq(rep->kind, RX_REPEAT);
    cr_expect_eq(rep->pos, 3);
    cr_expect_eq(rep->sub->kind, RX_GROUP);
    cr_expect_eq(rep->sub->sub->pos, 4);
    rx_free(&re);
}

/* ---- grammars (constrain/grammar_syntax) ---------------------------------------- */

static char *gbnf_result(const char *src) {
    GbnfGrammar g;
    int line = 0, col = 0;
    char msg[200];
    if (gbnf_parse(src, strlen(src), &g, &line, &col, msg, sizeof msg) != 0) {
        char *out = malloc(300);
        snprintf(out, 300, "error %d:%d: %s", line, col, msg);
        return out;
    }
    char *d = gbnf_dump(&g);
    gbnf_free(&g);
    return d;
}

static void run_gbnf(const Case *cases, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char *got = gbnf_result(cases[i].src);
        cr_expect_str_eq(got, cases[i].want, "grammar: %s\n  got:  %s\n  want: %s", cases[i].src,
                         got, cases[i].want);
        int line, col;
        char msg[100];
        int ok = strncmp(cases[i].want, "error", 5) != 0;
        cr_expect_eq(gbnf_check(cases[i].src, strlen(cases[i].src), &line, &col, msg, sizeof msg),
                     ok ? 0 : -1, "gbnf_check agrees: %s", cases[i].src);
        free(got);
    }
}

Test(grammar, valid) {
    static const Case cases[] = {
        {"root ::= \"a\"", "(root (str \"a\"))"},
        {"\n    root   ::= expr\n    expr   ::= term ((\"+\" | \"-\") term)*\n"
         "    term   ::= factor ((\"*\" | \"/\") factor)*\n"
         "    factor ::= [0-9]+ | \"(\" expr \")\"\n",
         "(root (ref expr)) "
         "(expr (seq (ref term) (rep 0 inf (seq (alt (str \"+\") (str \"-\")) (ref term))))) "
         "(term (seq (ref factor) (rep 0 inf (seq (alt (str \"*\") (str \"/\")) (ref factor))))) "
         "(factor (alt (rep 1 inf (class '0'-'9')) (seq (str \"(\") (ref expr) (str \")\"))))"},
        {"root ::= a b # comment ::= x\na ::= \"x\\n\\\"\\u{e9}\"? # more\nb ::= [^\\]a-]*",
         "(root (seq (ref a) (ref b))) (a (rep 0 1 (str \"x\\n\\\"\\u00e9\"))) "
         "(b (rep 0 inf (class U+0000-',' '.'-'\\' '^'-'`' 'b'-U+D7FF U+E000-U+10FFFF)))"},
        {"root ::=\n  \"a\"\n  | \"b\"\n", "(root (alt (str \"a\") (str \"b\")))"},
        {"root ::= (\"a\" |)", "(root (alt (str \"a\") (seq)))"},
        {"root ::= \"\"", "(root (str \"\"))"},
        {"root ::= x-y\nx-y ::= .", "(root (ref x-y)) (x-y (class U+0000-U+D7FF U+E000-U+10FFFF))"},
        {"root ::= \"a\"{2,3} \"b\"{2}", "(root (seq (rep 2 3 (str \"a\")) (rep 2 2 (str \"b\"))))"},
        {"root ::= 'a'", "(root (str \"a\"))"},
    };
    run_gbnf(cases, sizeof cases / sizeof cases[0]);
}

Test(grammar, errors) {
    static const Case cases[] = {
        {"", "error 1:1: the grammar has no rules (it needs a 'root' rule)"},
        {"start ::= \"a\"", "error 1:1: no 'root' rule"},
        {"root ::= expr", "error 1:10: undefined rule 'expr'"},
        {"root ::= \"a\"\nroot ::= \"b\"", "error 2:1: rule 'root' is defined twice"},
        {"root ::= \"a", "error 1:10: unterminated string literal"},
        {"root ::= [a-", "error 1:10: unterminated character class"},
        {"root ::= (\"a\"", "error 1:10: missing ')' to close this group"},
        {"root ::= \"a\")", "error 1:13: unexpected ')'"},
        {"root = \"a\"", "error 1:6: expected '::=' after the rule name"},
        {"::= \"a\"", "error 1:1: expected a rule name"},
        {"root ::= *", "error 1:10: nothing to repeat before '*'"},
        {"root ::= \"\\q\"", "error 1:11: unknown escape '\\q'"},
        {"root ::= [z-a]", "error 1:11: range out of order in class"},
        {"root ::= \"a\" @", "error 1:14: unexpected character '@'"},
        {"root ::= \"a\"\n  x ::= y", "error 2:9: undefined rule 'y'"},
    };
    run_gbnf(cases, sizeof cases / sizeof cases[0]);
}
