/*
 * lang/keywords.h — the one list of SGL's keywords (LANGUAGE.md §2).
 *
 * X(text, TOKEN, as_name)
 *   text     the keyword as written
 *   TOKEN    its Lemon token: TK_TOKEN in the generated parser.h
 *   as_name  1 when it may also stand for a name: a named argument
 *            (`grammar: g`) or a bare map key ({user: 1}); true, false and
 *            nil are literals there too (§12)
 *
 * What reads it: the lexer (lang/lexer.re looks every identifier up here
 * instead of having a rule per keyword), the lexer test, and the fuzzing
 * dictionary (tests/fuzz/gen_dict.c writes build/gen/sgl.dict from it).
 * Lemon's grammar cannot include a header, so lang/parser.y repeats the
 * list twice, and LANGUAGE.md once; they are checked against this one:
 *   - at compile time (lang/lexer.re): every TOKEN exists, and the codes
 *     follow TK_GRAMMAR_BODY in this order, i.e. parser.y's keyword %token
 *     line is this list, in order;
 *   - by tests/unit/test_lexer.c: that %token line, parser.y's
 *     `keyword ::=` alternatives (the as_name ones) and LANGUAGE.md §2's
 *     list name exactly these keywords.
 */
#ifndef SGL_LANG_KEYWORDS_H
#define SGL_LANG_KEYWORDS_H

#define SGL_KEYWORDS(X)            \
    X("fn", FN, 1)                 \
    X("let", LET, 1)               \
    X("if", IF, 1)                 \
    X("else", ELSE, 1)             \
    X("for", FOR, 1)               \
    X("in", IN, 1)                 \
    X("while", WHILE, 1)           \
    X("break", BREAK, 1)           \
    X("continue", CONTINUE, 1)     \
    X("return", RETURN, 1)         \
    X("fork", FORK, 1)             \
    X("import", IMPORT, 1)         \
    X("as", AS, 1)                 \
    X("true", TRUE, 0)             \
    X("false", FALSE, 0)           \
    X("nil", NIL, 0)               \
    X("and", AND, 1)               \
    X("or", OR, 1)                 \
    X("not", NOT, 1)               \
    X("system", SYSTEM, 1)         \
    X("user", USER, 1)             \
    X("assistant", ASSISTANT, 1)   \
    X("grammar", GRAMMAR, 1)

/* KW_INDEX_FN, ...: a keyword's place in the list; SGL_KEYWORD_COUNT of them. */
enum {
#define SGL_KW_INDEX(text, tok, as_name) KW_INDEX_##tok,
    SGL_KEYWORDS(SGL_KW_INDEX)
#undef SGL_KW_INDEX
    SGL_KEYWORD_COUNT
};

#endif
