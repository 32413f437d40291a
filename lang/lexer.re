/*
 * lang/lexer.re — the tokenizer, a table of re2c rules (interface and the
 * newline/call/string rules it owns: lang/lexer.h).
 *
 * Start conditions:
 *   code   program text (also the inside of ${ ... })
 *   str    "..."        (escapes and ${ }; a line break is an error)
 *   tstr   """..."""    (escapes and ${ }; line breaks allowed)
 *   rstr   r"..." re"..."  (no escapes: `\x` is kept as two bytes,
 *   rtstr  r"""..."""        but `\"` does not end the string)
 * Every condition ends with a catch-all or covers every byte, and `$` (end
 * of input, re2c:eof with a NUL sentinel) is a rule in each, so no byte is
 * left unmatched. A NUL byte inside the buffer is an ordinary byte.
 * Keywords are not rules here: an identifier is looked up in
 * lang/keywords.h, the one list of them (word() below).
 *
 * The mode stack (Lexer.stack) records every open bracket and string: it
 * says whether a newline matters (only directly inside `{ }` or at top
 * level), which condition to resume when a `}` closes a ${ }, and where an
 * unterminated string began.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/keywords.h"
#include "lang/lexer.h"
#include "base/err.h"
#include "parser.h"

typedef enum { M_BRACE = 1, M_PAREN, M_BRACKET, M_INTERP, M_STRING } LexMode;

/* Frame flag (besides LEX_STR_*): this string has had a ${ } already. */
enum { F_INTERPOLATED = 8 };

/*!types:re2c*/

int lex_line_starts(const char *src, size_t len, int **starts) {
    int n = 1;
    for (size_t i = 0; i < len; i++)
        if (src[i] == '\n') n++;
    int *s = malloc((size_t)n * sizeof *s);
    if (!s) return -1;
    int k = 0;
    s[k++] = 0;
    for (size_t i = 0; i < len; i++)
        if (src[i] == '\n') s[k++] = (int)(i + 1);
    *starts = s;
    return n;
}

void lex_position(const Lexer *lx, const char *p, int *line, int *col) {
    int off = (int)(p - lx->src);
    int lo = 0, hi = lx->nlines - 1;
    while (lo < hi) {   /* last line start <= off */
        int mid = (lo + hi + 1) / 2;
        if (lx->line_starts[mid] <= off) lo = mid;
        else hi = mid - 1;
    }
    *line = lo + 1;
    *col = off - lx->line_starts[lo] + 1;
}

void lex_init(Lexer *lx, const char *src, size_t len, const int *line_starts, int nlines) {
    memset(lx, 0, sizeof *lx);
    lx->src = src;
    lx->cur = src;
    lx->lim = src + len;
    lx->line_starts = line_starts;
    lx->nlines = nlines;
    lx->cond = yyccode;
    /* A UTF-8 byte order mark is not part of the program. */
    if (len >= 3 && memcmp(src, "\xEF\xBB\xBF", 3) == 0) lx->cur += 3;
}

static int lex_error(Lexer *lx, const char *at, int at_eof, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int lex_error(Lexer *lx, const char *at, int at_eof, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(lx->err, sizeof lx->err, fmt, ap);
    va_end(ap);
    lex_position(lx, at, &lx->err_line, &lx->err_col);
    lx->err_at_eof = at_eof;
    lx->failed = 1;
    return -1;
}

static LexFrame *top(Lexer *lx) {
    return lx->depth ? &lx->stack[lx->depth - 1] : NULL;
}

static int push(Lexer *lx, LexMode kind, int flags) {
    if (lx->depth == LEX_MAX_NEST)
        return lex_error(lx, lx->tok, 0, "brackets and strings nested too deeply");
    LexFrame *f = &lx->stack[lx->depth++];
    f->kind = (unsigned char)kind;
    f->flags = (unsigned char)flags;
    lex_position(lx, lx->tok, &f->line, &f->col);
    return 0;
}

/* Pop the innermost frame if it is `kind` (a mismatched closer is left for
 * the parser to report). */
static void pop_if(Lexer *lx, LexMode kind) {
    LexFrame *f = top(lx);
    if (f && f->kind == kind) lx->depth--;
}

/* Fill *t with the token just matched. */
static int emit(Lexer *lx, LexToken *t, int code) {
    memset(t, 0, sizeof *t);
    t->s = lx->tok;
    t->n = (size_t)(lx->cur - lx->tok);
    lex_position(lx, lx->tok, &t->line, &t->col);
    return code;
}

/* A newline ends a statement unless it is inside ( ), [ ] or ${ }, or the
 * line ended with a token that needs more (an operator, `,`, an open
 * bracket), or nothing is there to end. */
static int newline_matters(const Lexer *lx) {
    if (lx->depth && lx->stack[lx->depth - 1].kind != M_BRACE) return 0;
    switch (lx->prev) {
    case 0: case TK_NL: case TK_SEMI:
    case TK_LBRACE: case TK_LPAREN: case TK_LPAREN_CALL: case TK_LBRACKET:
    case TK_LBRACKET_INDEX: case TK_COMMA: case TK_COLON: case TK_DOT: case TK_DOTDOT:
    case TK_QUESTION: case TK_ASSIGN: case TK_PLUS_ASSIGN: case TK_MINUS_ASSIGN:
    case TK_STAR_ASSIGN: case TK_SLASH_ASSIGN: case TK_PLUS: case TK_MINUS: case TK_STAR:
    case TK_SLASH: case TK_PERCENT: case TK_EQ: case TK_NE: case TK_LT: case TK_LE:
    case TK_GT: case TK_GE: case TK_AND: case TK_OR: case TK_NOT: case TK_IN:
    case TK_ELSE:
        return 0;
    default:
        return 1;
    }
}

/* `(` or `[` written right after one of these, with no space, is a call or
 * an index; otherwise it starts a new expression (a new piece, §4). */
static int adjacent_to_operand(const Lexer *lx) {
    if (lx->prev_end != lx->tok) return 0;
    switch (lx->prev) {
    case TK_IDENT: case TK_RPAREN: case TK_RBRACKET: case TK_RBRACE: case TK_STRING:
    case TK_STR_TAIL: case TK_REGEX: case TK_TRUE: case TK_FALSE: case TK_NIL:
        return 1;
    default:
        return 0;
    }
}

static int open_paren(Lexer *lx, LexToken *t) {
    int code = adjacent_to_operand(lx) ? TK_LPAREN_CALL : TK_LPAREN;
    if (push(lx, M_PAREN, 0)) return -1;
    return emit(lx, t, code);
}

static int open_bracket(Lexer *lx, LexToken *t) {
    int code = adjacent_to_operand(lx) ? TK_LBRACKET_INDEX : TK_LBRACKET;
    if (push(lx, M_BRACKET, 0)) return -1;
    return emit(lx, t, code);
}

/* The keywords (lang/keywords.h, the one list), by length then text. */
static const struct {
    const char *text;
    size_t len;
    int code;
} keywords[] = {
#define KW_ENTRY(text, tok, as_name) {text, sizeof text - 1, TK_##tok},
    SGL_KEYWORDS(KW_ENTRY)
#undef KW_ENTRY
};

_Static_assert(sizeof keywords / sizeof keywords[0] == SGL_KEYWORD_COUNT, "one entry per keyword");

/* Lemon numbers the tokens in %token order and parser.y declares the
 * keywords last, right after GRAMMAR_BODY: this holds exactly when that
 * %token line is SGL_KEYWORDS in order. */
#define KW_CODE_CHECK(text, tok, as_name)                                  \
    _Static_assert(TK_##tok == TK_GRAMMAR_BODY + 1 + KW_INDEX_##tok,       \
                   "parser.y's keyword %token line is SGL_KEYWORDS, in order (" text ")");
SGL_KEYWORDS(KW_CODE_CHECK)
#undef KW_CODE_CHECK

/* An identifier or a keyword; a keyword right after `.` is a field name
 * (`state.user`). */
static int word(Lexer *lx, LexToken *t) {
    size_t n = (size_t)(lx->cur - lx->tok);
    if (lx->prev != TK_DOT)
        for (size_t i = 0; i < sizeof keywords / sizeof keywords[0]; i++)
            if (keywords[i].len == n && memcmp(keywords[i].text, lx->tok, n) == 0)
                return emit(lx, t, keywords[i].code);
    return emit(lx, t, TK_IDENT);
}

static int number_int(Lexer *lx, LexToken *t, int base) {
    const char *p = lx->tok + (base == 16 ? 2 : 0);
    uint64_t v = 0;
    for (; p < lx->cur; p++) {
        int d = *p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10;
        if (v > ((uint64_t)INT64_MAX - (uint64_t)d) / (uint64_t)base)
            return lex_error(lx, lx->tok, 0, "integer literal too large (the limit is %lld)",
                             (long long)INT64_MAX);
        v = v * (uint64_t)base + (uint64_t)d;
    }
    emit(lx, t, TK_INT);
    t->ival = (int64_t)v;
    return TK_INT;
}

static int number_float(Lexer *lx, LexToken *t) {
    char buf[64];
    size_t n = (size_t)(lx->cur - lx->tok);
    char *text = n < sizeof buf ? buf : malloc(n + 1);
    if (!text) return lex_error(lx, lx->tok, 0, "out of memory");
    memcpy(text, lx->tok, n);
    text[n] = '\0';
    errno = 0;
    double v = strtod(text, NULL);
    int range = errno == ERANGE && (v > 1.0 || v < -1.0);
    if (text != buf) free(text);
    if (range) return lex_error(lx, lx->tok, 0, "float literal out of range");
    emit(lx, t, TK_FLOAT);
    t->fval = v;
    return TK_FLOAT;
}

static int stray(Lexer *lx) {
    unsigned char c = (unsigned char)*lx->tok;
    if (c >= 0x21 && c < 0x7F) return lex_error(lx, lx->tok, 0, "unexpected character '%c'", c);
    if (c >= 0x80) {
        /* Name the code point when the bytes are valid UTF-8. */
        int need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : -1;
        uint32_t cp = need == 3 ? c & 7u : need == 2 ? c & 15u : c & 31u;
        const unsigned char *p = (const unsigned char *)lx->tok + 1;
        int ok = need > 0;
        for (int i = 0; ok && i < need; i++, p++) {
            if ((const char *)p >= lx->lim || (*p & 0xC0) != 0x80) ok = 0;
            else cp = cp << 6 | (*p & 0x3Fu);
        }
        if (ok) return lex_error(lx, lx->tok, 0, "unexpected character U+%04X", (unsigned)cp);
    }
    return lex_error(lx, lx->tok, 0, "unexpected byte 0x%02X", c);
}

/* ---- strings ------------------------------------------------------------ */

static int open_string(Lexer *lx, int flags) {
    if (push(lx, M_STRING, flags)) return -1;
    lx->str_seg = lx->cur;
    lx->cond = (flags & LEX_STR_RAW) ? ((flags & LEX_STR_TRIPLE) ? yycrtstr : yycrstr)
                                     : ((flags & LEX_STR_TRIPLE) ? yyctstr : yycstr);
    return 0;
}

/* The string segment ending at lx->tok: the whole string, or the part
 * before a ${, between two, or after the last. `closing` is 1 at the end
 * quote(s), 0 at a ${. */
static int string_segment(Lexer *lx, LexToken *t, int closing) {
    LexFrame *f = top(lx);
    int first = !(f->flags & F_INTERPOLATED);
    memset(t, 0, sizeof *t);
    t->s = lx->str_seg;
    t->n = (size_t)(lx->tok - lx->str_seg);
    t->flags = f->flags & (LEX_STR_TRIPLE | LEX_STR_RAW | LEX_STR_REGEX);
    if (first) {
        t->line = f->line;
        t->col = f->col;
    } else {
        lex_position(lx, lx->str_seg, &t->line, &t->col);
    }
    int code;
    if (closing) {
        code = first ? ((f->flags & LEX_STR_REGEX) ? TK_REGEX : TK_STRING) : TK_STR_TAIL;
        lx->depth--;
        lx->cond = yyccode;
    } else {
        code = first ? TK_STR_HEAD : TK_STR_MID;
        f->flags |= F_INTERPOLATED;
        lx->cond = yyccode;
        if (push(lx, M_INTERP, 0)) return -1;
    }
    return code;
}

static int unterminated(Lexer *lx) {
    /* The innermost string frame, to point at its opening quote. */
    for (int i = lx->depth - 1; i >= 0; i--) {
        LexFrame *f = &lx->stack[i];
        if (f->kind != M_STRING) continue;
        lx->failed = 1;
        lx->err_line = f->line;
        lx->err_col = f->col;
        /* A string that can span lines may still be completed by more
         * input (the REPL asks for another line). */
        lx->err_at_eof = lx->cur >= lx->lim &&
                         ((f->flags & LEX_STR_TRIPLE) || i != lx->depth - 1);
        snprintf(lx->err, sizeof lx->err, "%s",
                 (f->flags & LEX_STR_TRIPLE) ? "unterminated triple-quoted string"
                                             : "unterminated string");
        return -1;
    }
    return lex_error(lx, lx->tok, 1, "unterminated string");
}

static int bad_escape(Lexer *lx) {
    const char *p = lx->tok + 1;
    if (p < lx->lim && *p >= 0x21 && *p < 0x7F)
        return lex_error(lx, lx->tok, 0, "invalid escape sequence '\\%c'", *p);
    return lex_error(lx, lx->tok, 0, "invalid escape sequence");
}

static int unicode_escape(Lexer *lx) {
    /* lx->tok points at `\u{`, lx->cur after `}` */
    uint32_t cp = 0;
    int digits = 0;
    for (const char *p = lx->tok + 3; p < lx->cur - 1; p++, digits++) {
        int d = *p <= '9' ? *p - '0' : (*p | 0x20) - 'a' + 10;
        if (digits < 8) cp = cp * 16 + (uint32_t)d;
    }
    if (digits > 6 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return lex_error(lx, lx->tok, 0, "invalid code point in '\\u{...}' escape");
    return 0;
}

/* ---- grammar blocks ------------------------------------------------------ */

/* After `grammar NAME`: take `{ ... }` verbatim up to the matching brace,
 * skipping braces inside "..." literals, [...] classes and # comments. */
static int grammar_body(Lexer *lx, LexToken *t) {
    const char *p = lx->cur;
    while (p < lx->lim && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) p++;
    if (p >= lx->lim || *p != '{') return 0;
    const char *open = p++;
    const char *body = p;
    int depth = 1;
    while (p < lx->lim) {
        char c = *p;
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            for (p++; p < lx->lim && *p != close && *p != '\n'; p++)
                if (*p == '\\' && p + 1 < lx->lim && p[1] != '\n') p++;
            if (p < lx->lim && *p == close) p++;
        } else if (c == '#') {
            while (p < lx->lim && *p != '\n') p++;
        } else if (c == '{') {
            depth++, p++;
        } else if (c == '}') {
            if (--depth == 0) break;
            p++;
        } else {
            p++;
        }
    }
    if (p >= lx->lim) {
        lx->tok = open;
        return lex_error(lx, open, 1, "unterminated grammar block (no matching '}')");
    }
    memset(t, 0, sizeof *t);
    t->s = body;
    t->n = (size_t)(p - body);
    lex_position(lx, body, &t->line, &t->col);
    lx->cur = p + 1;
    lx->tok = open;
    return TK_GRAMMAR_BODY;
}

/* ---- the rules ----------------------------------------------------------- */

static int lex_raw(Lexer *lx, LexToken *t) {
    if (lx->grammar_state == 2) {
        lx->grammar_state = 0;
        int code = grammar_body(lx, t);
        if (code) return code;
    }
    for (;;) {
        lx->tok = lx->cur;
        /*!re2c
            re2c:api:style = free-form;
            re2c:define:YYCTYPE = "unsigned char";
            re2c:define:YYCURSOR = "lx->cur";
            re2c:define:YYMARKER = "lx->marker";
            re2c:define:YYLIMIT = "lx->lim";
            re2c:define:YYGETCONDITION = "lx->cond";
            re2c:define:YYGETCONDITION:naked = 1;
            re2c:define:YYSETCONDITION = "lx->cond = @@;";
            re2c:define:YYSETCONDITION:naked = 1;
            re2c:yyfill:enable = 0;
            re2c:eof = 0;
            re2c:indent:top = 2;

            ident = [A-Za-z_][A-Za-z0-9_]*;
            dec   = [0-9]+;
            hex   = "0" [xX] [0-9a-fA-F]+;
            exp   = [eE] [+-]? [0-9]+;
            flt   = dec "." dec exp? | dec exp;

            <code> [ \t\r\f\v]+   { continue; }
            <code> "#" [^\n]*     { continue; }
            <code> "\n"           { if (newline_matters(lx)) return emit(lx, t, TK_NL); continue; }
            <code> $              {
                for (int i = 0; i < lx->depth; i++)
                    if (lx->stack[i].kind == M_STRING) return unterminated(lx);
                return emit(lx, t, 0);
            }

            <code> ident       { return word(lx, t); }

            <code> flt         { return number_float(lx, t); }
            <code> hex         { return number_int(lx, t, 16); }
            <code> dec         { return number_int(lx, t, 10); }
            <code> (dec | flt) [A-Za-z_] [A-Za-z0-9_]*
                               { return lex_error(lx, lx->tok, 0, "invalid number literal"); }

            <code> "=="  { return emit(lx, t, TK_EQ); }
            <code> "!="  { return emit(lx, t, TK_NE); }
            <code> "<="  { return emit(lx, t, TK_LE); }
            <code> ">="  { return emit(lx, t, TK_GE); }
            <code> "<"   { return emit(lx, t, TK_LT); }
            <code> ">"   { return emit(lx, t, TK_GT); }
            <code> "="   { return emit(lx, t, TK_ASSIGN); }
            <code> "+="  { return emit(lx, t, TK_PLUS_ASSIGN); }
            <code> "-="  { return emit(lx, t, TK_MINUS_ASSIGN); }
            <code> "*="  { return emit(lx, t, TK_STAR_ASSIGN); }
            <code> "/="  { return emit(lx, t, TK_SLASH_ASSIGN); }
            <code> "+"   { return emit(lx, t, TK_PLUS); }
            <code> "-"   { return emit(lx, t, TK_MINUS); }
            <code> "*"   { return emit(lx, t, TK_STAR); }
            <code> "/"   { return emit(lx, t, TK_SLASH); }
            <code> "%"   { return emit(lx, t, TK_PERCENT); }
            <code> ".."  { return emit(lx, t, TK_DOTDOT); }
            <code> "."   { return emit(lx, t, TK_DOT); }
            <code> ","   { return emit(lx, t, TK_COMMA); }
            <code> ":"   { return emit(lx, t, TK_COLON); }
            <code> ";"   { return emit(lx, t, TK_SEMI); }
            <code> "?"   { return emit(lx, t, TK_QUESTION); }
            <code> "("   { return open_paren(lx, t); }
            <code> ")"   { pop_if(lx, M_PAREN); return emit(lx, t, TK_RPAREN); }
            <code> "["   { return open_bracket(lx, t); }
            <code> "]"   { pop_if(lx, M_BRACKET); return emit(lx, t, TK_RBRACKET); }
            <code> "{"   { if (push(lx, M_BRACE, 0)) return -1; return emit(lx, t, TK_LBRACE); }
            <code> "}"   {
                LexFrame *f = top(lx);
                if (f && f->kind == M_INTERP) {
                    /* end of ${ }: back into the string around it */
                    lx->depth--;
                    f = top(lx);
                    lx->str_seg = lx->cur;
                    lx->cond = (f->flags & LEX_STR_TRIPLE) ? yyctstr : yycstr;
                    continue;
                }
                pop_if(lx, M_BRACE);
                return emit(lx, t, TK_RBRACE);
            }

            <code> '"'         { if (open_string(lx, 0)) return -1; continue; }
            <code> '"""'       { if (open_string(lx, LEX_STR_TRIPLE)) return -1; continue; }
            <code> 'r"'        { if (open_string(lx, LEX_STR_RAW)) return -1; continue; }
            <code> 'r"""'      { if (open_string(lx, LEX_STR_RAW | LEX_STR_TRIPLE)) return -1; continue; }
            <code> 're"'       { if (open_string(lx, LEX_STR_RAW | LEX_STR_REGEX)) return -1; continue; }
            <code> 're"""'     {
                /* a regex's error column must map straight back to the source */
                return lex_error(lx, lx->tok, 0, "a regex literal cannot be triple-quoted "
                                 "(write re\"...\" with \\\" for a quote)");
            }

            <code> *           { return stray(lx); }

            <str, tstr> "\\" [ntr\\"$]            { continue; }
            <str, tstr> "\\u{" [0-9a-fA-F]+ "}"   { if (unicode_escape(lx)) return -1; continue; }
            <str, tstr> "\\"                      { return bad_escape(lx); }
            <str, tstr> "$"                       { continue; }
            <str, tstr> "${"                      { return string_segment(lx, t, 0); }
            <str, tstr> $                         { return unterminated(lx); }

            <str> [^"\\$\n]+   { continue; }
            <str> '"'          { return string_segment(lx, t, 1); }
            <str> "\n"         { return unterminated(lx); }

            <tstr> [^"\\$]+    { continue; }
            <tstr> '"' | '""'  { continue; }
            <tstr> '"""' '"'*  {
                /* In a run of quotes the last three close the string. */
                lx->tok = lx->cur - 3;
                return string_segment(lx, t, 1);
            }

            <rstr> [^"\\\n]+   { continue; }
            <rstr> "\\" [^\n]  { continue; }
            <rstr> "\\"        { continue; }
            <rstr> '"'         { return string_segment(lx, t, 1); }
            <rstr> "\n"        { return unterminated(lx); }
            <rstr> $           { return unterminated(lx); }

            <rtstr> [^"\\]+    { continue; }
            <rtstr> "\\" [^]   { continue; }
            <rtstr> "\\"       { continue; }
            <rtstr> '"' | '""' { continue; }
            <rtstr> '"""' '"'* { lx->tok = lx->cur - 3; return string_segment(lx, t, 1); }
            <rtstr> $          { return unterminated(lx); }
        */
    }
}

static int continues_grammar(int code, int state) {
    if (code == TK_GRAMMAR) return 1;
    if (code == TK_IDENT && state == 1) return 2;
    return 0;
}

int lex_next(Lexer *lx, LexToken *t) {
    int code;
    if (lx->failed) return -1;
    if (lx->pending) {
        lx->pending = 0;
        *t = lx->pending_tok;
        code = lx->pending_code;
        lx->prev_end = lx->pending_end;
    } else {
        code = lex_raw(lx, t);
        if (code == TK_NL) {
            /* Look at the next line's first token: `}` and `else` continue
             * what the newline would have ended. */
            LexToken next;
            int nc;
            const char *nl_end = lx->cur;
            do nc = lex_raw(lx, &next);
            while (nc == TK_NL);
            if (nc < 0) return -1;
            if (nc == TK_RBRACE || nc == TK_ELSE) {
                code = nc;
                *t = next;
            } else {
                lx->pending = 1;
                lx->pending_code = nc;
                lx->pending_tok = next;
                lx->pending_end = lx->cur;
                lx->prev_end = nl_end;
                lx->prev = code;
                lx->grammar_state = 0;
                return code;
            }
        }
        if (code < 0) return -1;
        lx->prev_end = lx->cur;
    }
    lx->prev = code;
    lx->grammar_state = continues_grammar(code, lx->grammar_state);
    return code;
}
