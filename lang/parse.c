/*
 * lang/parse.c — the parser driver (parse_source, lang/ast.h) and the
 * helpers the grammar actions call (lang/parse.h).
 *
 * parse_source copies the source into the tree's arena, runs the lexer
 * (lang/lexer.re) token by token into the Lemon parser (lang/parser.y), and
 * stops at the first error, lexical or syntactic. String tokens arrive raw;
 * here they get the triple-quote dedent rule (§2) and their escapes
 * resolved (the lexer has already rejected bad escapes, so that cannot
 * fail).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast.h"
#include "base/err.h"
#include "lang/ast_util.h"
#include "lang/lexer.h"
#include "lang/parse.h"

#include "base/utf8.h"
#include "parser.h"

/* Deeper trees than this are refused, so that recursive passes over the
 * tree (the compiler) have a bounded C stack. */
enum { PARSE_MAX_DEPTH = 1000 };

static void oom(ParseState *ps) {
    longjmp(ps->oom, 1);
}

AstNode *parse_node_at(ParseState *ps, AstKind kind, int line, int col) {
    AstNode *n = ast_new(ps->tree, kind, line, col);
    if (!n) oom(ps);
    return n;
}

AstNode *parse_node(ParseState *ps, AstKind kind, const LexToken *at) {
    return parse_node_at(ps, kind, at->line, at->col);
}

void parse_push(ParseState *ps, AstNode *owner, AstNode *item) {
    ast_push(ps->tree, &owner->list, item);
    if (ast_failed(ps->tree)) oom(ps);
}

static char *arena_copy(ParseState *ps, const char *s, size_t n) {
    char *p = ast_strdup(ps->tree, s, n);
    if (!p) oom(ps);
    return p;
}

char *parse_text(ParseState *ps, const LexToken *t) {
    return arena_copy(ps, t->s, t->n);
}

void parse_start_of(const AstNode *n, int *line, int *col) {
    while (n && (n->kind == AST_BINARY || n->kind == AST_AND || n->kind == AST_OR ||
                 n->kind == AST_CALL) && n->a)
        n = n->a;
    *line = n ? n->line : 0;
    *col = n ? n->col : 0;
}

AstNode *parse_binary(ParseState *ps, int op, AstNode *a, const LexToken *at, AstNode *b) {
    AstNode *n = parse_node(ps, AST_BINARY, at);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

AstNode *parse_suffix(ParseState *ps, AstNode *object, AstNode *suffix) {
    (void)ps;
    suffix->a = object;
    if (suffix->kind != AST_CALL) {
        /* index and field sit at their object's first token (ast.h) */
        parse_start_of(object, &suffix->line, &suffix->col);
    }
    return suffix;
}

AstNode *parse_assign(ParseState *ps, int op, AstNode *target, AstNode *value) {
    int line, col;
    parse_start_of(target, &line, &col);
    if (target->kind != AST_IDENT && target->kind != AST_INDEX && target->kind != AST_FIELD) {
        parse_error(ps, line, col, "cannot assign to this expression");
    }
    AstNode *n = parse_node_at(ps, AST_ASSIGN, line, col);
    n->op = op;
    n->a = target;
    n->b = value;
    return n;
}

/* ---- strings --------------------------------------------------------------- */

/* A growable byte buffer in the arena's spirit: malloc'd while building,
 * copied into the arena when done. */
typedef struct {
    char *p;
    size_t len, cap;
} Buf;

static void buf_put(ParseState *ps, Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            free(b->p);
            b->p = NULL;
            oom(ps);
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_utf8(ParseState *ps, Buf *b, uint32_t cp) {
    char u[UTF8_MAX];
    buf_put(ps, b, u, (size_t)utf8_encode(cp, u));
}

/* Resolve escapes (already validated by the lexer) into the buffer. */
static void unescape(ParseState *ps, Buf *b, const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != '\\') j++;
        buf_put(ps, b, s + i, j - i);
        if (j >= n) break;
        char e = j + 1 < n ? s[j + 1] : '\\';
        i = j + 2;
        switch (e) {
        case 'n': buf_put(ps, b, "\n", 1); break;
        case 't': buf_put(ps, b, "\t", 1); break;
        case 'r': buf_put(ps, b, "\r", 1); break;
        case 'u': {
            uint32_t cp = 0;
            for (i = j + 3; i < n && s[i] != '}'; i++)
                cp = cp * 16 + (uint32_t)(s[i] <= '9' ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
            i++;
            put_utf8(ps, b, cp);
            break;
        }
        default: buf_put(ps, b, &e, 1); break;   /* \\ \" \$ */
        }
    }
}

/* One piece of string text, raw (as in the source) or resolved. */
typedef struct {
    const char *s;
    size_t n;
    int line, col;
} Seg;

static int is_blank(char c) {
    return c == ' ' || c == '\t';
}

/*
 * The triple-quote rule (§2), applied to the raw segments of one string (the
 * parts between ${ }s) before escapes are resolved, so an escaped \n is not
 * a line break:
 *   - a line break right after the opening quotes (blanks may stand before
 *     it) is dropped;
 *   - if the closing quotes stand on a line of their own (only blanks before
 *     them), that line and the line break before it are dropped, and its
 *     blanks are the indentation removed from the start of every line;
 *   - a line indented less than that loses the blanks it has (no error).
 * Each segment's text is rewritten into `out` (malloc'd buffers).
 */
static void dedent(ParseState *ps, Seg *segs, int nseg, Buf *out) {
    /* opening line break (with any blanks before it) */
    size_t k0 = 0;
    int dropped_first = 0;
    while (k0 < segs[0].n && is_blank(segs[0].s[k0])) k0++;
    if (k0 < segs[0].n && segs[0].s[k0] == '\n') {
        segs[0].s += k0 + 1, segs[0].n -= k0 + 1;
        dropped_first = 1;
    }
    /* closing line */
    const char *indent = "";
    size_t indent_n = 0;
    Seg *last = &segs[nseg - 1];
    size_t k = last->n;
    while (k > 0 && is_blank(last->s[k - 1])) k--;
    if (k > 0 && last->s[k - 1] == '\n') {
        indent = last->s + k;
        indent_n = last->n - k;
        last->n = k - 1;
    } else if (k == 0 && nseg == 1 && dropped_first) {
        /* nothing but the closing line: the string is empty */
        last->n = 0;
    }
    for (int i = 0; i < nseg; i++) {
        const char *s = segs[i].s;
        size_t n = segs[i].n;
        size_t p = 0;
        int at_line_start = i == 0;
        while (p < n) {
            if (at_line_start) {
                size_t m = 0;
                while (m < indent_n && p + m < n && s[p + m] == indent[m]) m++;
                p += m;
                at_line_start = 0;
                continue;
            }
            const char *nl = memchr(s + p, '\n', n - p);
            size_t end = nl ? (size_t)(nl - s) + 1 : n;
            buf_put(ps, &out[i], s + p, end - p);
            p = end;
            if (nl) at_line_start = 1;
        }
    }
}

/* Turn raw segments into resolved text: dedent when triple-quoted, then
 * escapes unless raw. Results are arena copies in segs[]. */
static void finish_segments(ParseState *ps, Seg *segs, int nseg, int flags) {
    Buf *out = calloc((size_t)nseg, sizeof *out);
    if (!out) oom(ps);
    /* A longjmp out of here would leak `out`; catch it, free, re-raise. */
    jmp_buf saved;
    memcpy(saved, ps->oom, sizeof saved);
    if (setjmp(ps->oom)) {
        for (int i = 0; i < nseg; i++) free(out[i].p);
        free(out);
        memcpy(ps->oom, saved, sizeof saved);
        oom(ps);
    }
    if (flags & LEX_STR_TRIPLE) {
        Buf *raw = out;
        dedent(ps, segs, nseg, raw);
        for (int i = 0; i < nseg; i++) {
            segs[i].s = raw[i].p ? raw[i].p : "";
            segs[i].n = raw[i].len;
        }
    }
    for (int i = 0; i < nseg; i++) {
        if (flags & LEX_STR_RAW) {
            segs[i].s = arena_copy(ps, segs[i].s, segs[i].n);
        } else {
            Buf b = {0};
            /* b is not tracked by the handler above: build, copy, free
             * without an allocation in between that could jump. */
            unescape(ps, &b, segs[i].s, segs[i].n);
            char *copy = ast_strdup(ps->tree, b.p ? b.p : "", b.len);
            free(b.p);
            if (!copy) oom(ps);
            segs[i].s = copy;
            segs[i].n = b.len;
        }
    }
    for (int i = 0; i < nseg; i++) free(out[i].p);
    free(out);
    memcpy(ps->oom, saved, sizeof saved);
}

AstNode *parse_string(ParseState *ps, const LexToken *t) {
    Seg seg = {t->s, t->n, t->line, t->col};
    finish_segments(ps, &seg, 1, t->flags);
    AstNode *n = parse_node(ps, (t->flags & LEX_STR_REGEX) ? AST_REGEX : AST_STRING, t);
    n->str = (char *)seg.s;
    n->str_len = seg.n;
    return n;
}

/* While an interpolated string is being built, its list holds every raw
 * segment (as AST_STRING nodes pointing into the source, even empty ones,
 * so the dedent rule sees where lines start) between the expressions;
 * ival holds the string's LEX_STR_* flags. parse_interp_end resolves them
 * and drops the empty ones. */
static void add_segment(ParseState *ps, AstNode *interp, const LexToken *t) {
    AstNode *s = parse_node(ps, AST_STRING, t);
    s->str = (char *)t->s;
    s->str_len = t->n;
    s->ival = 1;   /* marks a raw segment */
    parse_push(ps, interp, s);
}

AstNode *parse_interp_begin(ParseState *ps, const LexToken *head, AstNode *expr) {
    AstNode *n = parse_node(ps, AST_INTERP, head);
    n->ival = head->flags;
    add_segment(ps, n, head);
    parse_push(ps, n, expr);
    return n;
}

void parse_interp_add(ParseState *ps, AstNode *interp, const LexToken *seg, AstNode *expr) {
    add_segment(ps, interp, seg);
    parse_push(ps, interp, expr);
}

AstNode *parse_interp_end(ParseState *ps, AstNode *interp, const LexToken *tail) {
    add_segment(ps, interp, tail);
    int nseg = 0;
    for (int i = 0; i < interp->list.len; i++)
        if (interp->list.items[i]->kind == AST_STRING && interp->list.items[i]->ival) nseg++;
    Seg *segs = malloc((size_t)nseg * sizeof *segs);
    if (!segs) oom(ps);
    jmp_buf saved;
    memcpy(saved, ps->oom, sizeof saved);
    if (setjmp(ps->oom)) {
        free(segs);
        memcpy(ps->oom, saved, sizeof saved);
        oom(ps);
    }
    int k = 0;
    for (int i = 0; i < interp->list.len; i++) {
        AstNode *p = interp->list.items[i];
        if (p->kind == AST_STRING && p->ival)
            segs[k++] = (Seg){p->str, p->str_len, p->line, p->col};
    }
    finish_segments(ps, segs, nseg, (int)interp->ival);
    /* rebuild the list without empty segments */
    int out = 0;
    k = 0;
    for (int i = 0; i < interp->list.len; i++) {
        AstNode *p = interp->list.items[i];
        if (p->kind == AST_STRING && p->ival) {
            Seg *s = &segs[k++];
            if (s->n == 0) continue;
            p->str = (char *)s->s;
            p->str_len = s->n;
            p->ival = 0;
        }
        interp->list.items[out++] = p;
    }
    interp->list.len = out;
    interp->ival = 0;
    free(segs);
    memcpy(ps->oom, saved, sizeof saved);
    return interp;
}

/* ---- errors ------------------------------------------------------------------ */

void parse_error(ParseState *ps, int line, int col, const char *fmt, ...) {
    if (ps->failed) return;
    ps->failed = 1;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(msg, sizeof msg, fmt, ap);
    va_end(ap);
    diag_set(ps->err, ps->file, line, col, ps->src, ps->len, "%s", msg);
}

/* How a token is named in "unexpected ..." messages. */
static void describe(int code, const LexToken *t, char *buf, size_t cap) {
    switch (code) {
    case 0: snprintf(buf, cap, "end of input"); return;
    case TK_NL: snprintf(buf, cap, "newline"); return;
    case TK_IDENT:
        snprintf(buf, cap, "identifier '%.*s'", t->n > 40 ? 40 : (int)t->n, t->s);
        return;
    case TK_INT: case TK_FLOAT:
        snprintf(buf, cap, "number %.*s", t->n > 40 ? 40 : (int)t->n, t->s);
        return;
    case TK_STRING: case TK_STR_HEAD: snprintf(buf, cap, "string"); return;
    case TK_STR_MID: case TK_STR_TAIL: snprintf(buf, cap, "'}'"); return;
    case TK_REGEX: snprintf(buf, cap, "regex"); return;
    case TK_GRAMMAR_BODY: snprintf(buf, cap, "'{'"); return;
    default: break;
    }
    if (code >= TK_FN && code <= TK_GRAMMAR) {
        snprintf(buf, cap, "keyword '%.*s'", (int)t->n, t->s);
        return;
    }
    snprintf(buf, cap, "'%.*s'", t->n > 40 ? 40 : (int)t->n, t->s);
}

void parse_syntax_error(ParseState *ps, int code, const LexToken *t) {
    if (ps->failed) return;
    char what[96];
    describe(code, t, what, sizeof what);
    int line = t->line, col = t->col;
    if (code == TK_STR_MID || code == TK_STR_TAIL) col--;   /* at the `}` of ${ } */
    if (code == 0) {
        parse_error(ps, line, col, "unexpected end of input");
        ps->err->at_eof = 1;
        return;
    }
    const char *hint = "";
    if ((code == TK_LPAREN || code == TK_LBRACKET) &&
        (ps->prev_code == TK_IDENT || ps->prev_code == TK_RPAREN ||
         ps->prev_code == TK_RBRACKET || ps->prev_code == TK_STRING))
        hint = code == TK_LPAREN ? " (a call's '(' must follow the function without a space)"
                                 : " (an index's '[' must follow the value without a space)";
    parse_error(ps, line, col, "unexpected %s%s", what, hint);
}

/* ---- driver -------------------------------------------------------------------- */

/* Refuse trees deeper than PARSE_MAX_DEPTH; the walk itself stops there. */
static const AstNode *too_deep(const AstNode *n, int depth) {
    if (!n) return NULL;
    if (depth > PARSE_MAX_DEPTH) return n;
    const AstNode *bad;
    if ((bad = too_deep(n->a, depth + 1))) return bad;
    if ((bad = too_deep(n->b, depth + 1))) return bad;
    if ((bad = too_deep(n->c, depth + 1))) return bad;
    for (int i = 0; i < n->list.len; i++)
        if ((bad = too_deep(n->list.items[i], depth + 1))) return bad;
    return NULL;
}

static void run_parser(ParseState *ps, void *parser, Lexer *lx) {
    for (;;) {
        LexToken tok;
        int code = lex_next(lx, &tok);
        if (code < 0) {
            ps->failed = 1;
            diag_set(ps->err, ps->file, lx->err_line, lx->err_col, ps->src, ps->len, "%s",
                     lx->err);
            ps->err->at_eof = lx->err_at_eof;
            return;
        }
        ps->last_tok = tok;
        ps->last_code = code;
        parse_lemon(parser, code, tok);
        if (ps->failed || code == 0) return;
        ps->prev_code = code;
        ps->prev_tok = tok;
    }
}


/* Everything parse_source allocates, on the heap so that it is still
 * valid after a longjmp back from an out-of-memory. */
typedef struct {
    AstTree tree;
    ParseState ps;
    int *line_starts;
    void *parser;
    Lexer lx;
} ParseRun;

int parse_source(const char *file, const char *src, size_t len, AstTree *out, Diag *err) {
    memset(out, 0, sizeof *out);
    ParseRun *run = calloc(1, sizeof *run);
    if (!run) {
        diag_set(err, file, 0, 0, NULL, 0, "out of memory");
        return -1;
    }
    ParseState *ps = &run->ps;
    ps->tree = &run->tree;
    ps->err = err;
    ps->file = file ? file : "<input>";
    ps->len = len;

    if (setjmp(ps->oom)) {
        if (run->parser) parse_lemonFree(run->parser, free);
        run->parser = NULL;
        ps->failed = 0;
        parse_error(ps, 0, 0, "out of memory");
        goto done;
    }
    char *copy = ast_strdup(&run->tree, src ? src : "", src ? len : 0);
    run->tree.file = ast_strdup(&run->tree, ps->file, strlen(ps->file));
    if (!copy || !run->tree.file) oom(ps);
    /* CRLF line ends read as LF (columns are unchanged: the CR is last) */
    size_t w = 0;
    for (size_t r = 0; r < len; r++)
        if (!(copy[r] == '\r' && r + 1 < len && copy[r + 1] == '\n')) copy[w++] = copy[r];
    copy[w] = '\0';
    ps->len = w;
    ps->src = copy;
    int nlines = lex_line_starts(copy, ps->len, &run->line_starts);
    if (nlines < 0) oom(ps);
    size_t bad = utf8_invalid_at(copy, ps->len);
    if (bad < ps->len) {
        int line = 0;
        while (line + 1 < nlines && (size_t)run->line_starts[line + 1] <= bad) line++;
        parse_error(ps, line + 1, (int)(bad - (size_t)run->line_starts[line]) + 1,
                    "invalid UTF-8 (byte 0x%02X); source must be UTF-8",
                    (unsigned)(unsigned char)copy[bad]);
        goto done;
    }
    lex_init(&run->lx, copy, ps->len, run->line_starts, nlines);
    run->parser = parse_lemonAlloc(malloc, ps);
    if (!run->parser) oom(ps);

    run_parser(ps, run->parser, &run->lx);
    parse_lemonFree(run->parser, free);
    run->parser = NULL;

    if (!ps->failed && !run->tree.root) parse_error(ps, 1, 1, "empty parse");
    if (!ps->failed) {
        const AstNode *bad = too_deep(run->tree.root, 0);
        if (bad) parse_error(ps, bad->line, bad->col, "program nested too deeply");
    }
done:;
    int failed = ps->failed;
    free(run->line_starts);
    if (failed) ast_free(&run->tree);
    else *out = run->tree;
    free(run);
    return failed ? -1 : 0;
}
