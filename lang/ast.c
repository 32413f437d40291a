/*
 * lang/ast.c — the AST arena and node helpers (contract in lang/ast.h).
 *
 * Every node, list array and string of a tree is carved out of the tree's
 * arena: a chain of chunks, each allocated once and freed together by
 * ast_free. Lists grow by copying into a fresh arena block (the old block is
 * abandoned until ast_free); doubling keeps that waste below the list's own
 * size.
 *
 *   arena ──► chunk ──► chunk ──► NULL      (newest first)
 *             [hdr|used....|free]
 *
 * Out of memory: ast_new and ast_strdup return NULL; ast_push leaves the list
 * as it was. All three then set the arena's `failed` flag (ast_failed), so a
 * builder can check once at the end.
 */
#include "lang/ast.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lang/ast_util.h"

typedef struct Chunk {
    struct Chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} Chunk;

struct AstArena {
    Chunk *head;
    int failed;
};

enum { CHUNK_MIN = 32 * 1024 };

static void *arena_alloc(AstTree *tree, size_t size) {
    if (!tree->arena) {
        tree->arena = calloc(1, sizeof *tree->arena);
        if (!tree->arena) return NULL;
    }
    AstArena *ar = tree->arena;
    size = (size + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    if (size == 0) size = alignof(max_align_t);
    Chunk *c = ar->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > CHUNK_MIN ? size : CHUNK_MIN;
        c = malloc(sizeof *c + cap);
        if (!c) {
            ar->failed = 1;
            return NULL;
        }
        c->next = ar->head;
        c->used = 0;
        c->cap = cap;
        ar->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

AstNode *ast_new(AstTree *tree, AstKind kind, int line, int col) {
    AstNode *n = arena_alloc(tree, sizeof *n);
    if (!n) return NULL;
    n->kind = kind;
    n->line = line;
    n->col = col;
    return n;
}

void ast_push(AstTree *tree, AstList *list, AstNode *item) {
    if (list->len == list->cap) {
        int cap = list->cap ? list->cap * 2 : 4;
        AstNode **items = arena_alloc(tree, (size_t)cap * sizeof *items);
        if (!items) return;
        if (list->len) memcpy(items, list->items, (size_t)list->len * sizeof *items);
        list->items = items;
        list->cap = cap;
    }
    list->items[list->len++] = item;
}

char *ast_strdup(AstTree *tree, const char *s, size_t len) {
    char *p = arena_alloc(tree, len + 1);
    if (!p) return NULL;
    if (len) memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

int ast_failed(const AstTree *tree) {
    return tree->arena && tree->arena->failed;
}

void ast_free(AstTree *tree) {
    if (!tree) return;
    if (tree->arena) {
        Chunk *c = tree->arena->head;
        while (c) {
            Chunk *next = c->next;
            free(c);
            c = next;
        }
        free(tree->arena);
    }
    tree->arena = NULL;
    tree->root = NULL;
    tree->file = NULL;
}

#define AST_KIND_NAMES(X) \
    X(AST_NIL, "nil") X(AST_TRUE, "true") X(AST_FALSE, "false") X(AST_INT, "int") \
    X(AST_FLOAT, "float") X(AST_STRING, "string") X(AST_INTERP, "interp") \
    X(AST_REGEX, "regex") X(AST_IDENT, "ident") X(AST_LIST, "list") X(AST_MAP, "map") \
    X(AST_PAIR, "pair") X(AST_BINARY, "binary") X(AST_UNARY, "unary") X(AST_AND, "and") \
    X(AST_OR, "or") X(AST_COND, "cond") X(AST_CALL, "call") X(AST_ARG, "arg") \
    X(AST_INDEX, "index") X(AST_FIELD, "field") X(AST_FN, "fn") X(AST_PARAM, "param") \
    X(AST_FORK, "fork") X(AST_BLOCK, "block") X(AST_EXPR_STMT, "expr-stmt") \
    X(AST_LET, "let") X(AST_ASSIGN, "assign") X(AST_IF, "if") X(AST_WHILE, "while") \
    X(AST_FOR, "for") X(AST_BREAK, "break") X(AST_CONTINUE, "continue") \
    X(AST_RETURN, "return") X(AST_ROLE, "role") X(AST_IMPORT, "import") \
    X(AST_GRAMMAR, "grammar") X(AST_PROGRAM, "program")

#define AST_NAME_ENTRY(kind, text) [kind] = text,
static const char *const kind_names[] = {AST_KIND_NAMES(AST_NAME_ENTRY)};
#define AST_COUNT_ENTRY(kind, text) +1
_Static_assert(0 AST_KIND_NAMES(AST_COUNT_ENTRY) == AST_KIND_COUNT,
               "every AstKind needs a name");

const char *ast_kind_name(AstKind kind) {
    if ((int)kind < 0 || kind >= AST_KIND_COUNT) return "?";
    return kind_names[kind];
}

/* ---- ast_dump ------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} DumpBuf;

static void dump_put(DumpBuf *b, const char *s, size_t n) {
    if (b->failed) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void dump_str(DumpBuf *b, const char *s) {
    dump_put(b, s, strlen(s));
}

static void dump_quoted(DumpBuf *b, const char *s, size_t n) {
    dump_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        switch (c) {
        case '\n': dump_str(b, "\\n"); break;
        case '\t': dump_str(b, "\\t"); break;
        case '\r': dump_str(b, "\\r"); break;
        case '\\': dump_str(b, "\\\\"); break;
        case '"': dump_str(b, "\\\""); break;
        default:
            if (c < 0x20 || c == 0x7F) {
                snprintf(esc, sizeof esc, "\\x%02x", c);
                dump_str(b, esc);
            } else {
                dump_put(b, (const char *)&c, 1);
            }
        }
    }
    dump_put(b, "\"", 1);
}

static const char *op_text(int op) {
    static const char *const ops[] = {
        [AST_OP_NONE] = "=", [AST_OP_ADD] = "+", [AST_OP_SUB] = "-", [AST_OP_MUL] = "*",
        [AST_OP_DIV] = "/", [AST_OP_MOD] = "%", [AST_OP_EQ] = "==", [AST_OP_NE] = "!=",
        [AST_OP_LT] = "<", [AST_OP_LE] = "<=", [AST_OP_GT] = ">", [AST_OP_GE] = ">=",
        [AST_OP_IN] = "in", [AST_OP_RANGE] = "..", [AST_OP_NEG] = "neg", [AST_OP_NOT] = "not",
    };
    return op >= 0 && op <= AST_OP_NOT ? ops[op] : "?";
}

static void dump_node(DumpBuf *b, const AstNode *n);

static void dump_list(DumpBuf *b, const AstList *l) {
    for (int i = 0; i < l->len; i++) {
        dump_put(b, " ", 1);
        dump_node(b, l->items[i]);
    }
}

static void dump_open(DumpBuf *b, const char *head) {
    dump_put(b, "(", 1);
    dump_str(b, head);
}

static void dump_child(DumpBuf *b, const AstNode *n) {
    dump_put(b, " ", 1);
    dump_node(b, n);
}

static void dump_node(DumpBuf *b, const AstNode *n) {
    char num[64];
    if (!n) {
        dump_str(b, "_");
        return;
    }
    switch (n->kind) {
    case AST_NIL: dump_str(b, "nil"); return;
    case AST_TRUE: dump_str(b, "true"); return;
    case AST_FALSE: dump_str(b, "false"); return;
    case AST_INT:
        snprintf(num, sizeof num, "%lld", (long long)n->ival);
        dump_str(b, num);
        return;
    case AST_FLOAT:
        /* the shortest text that reads back as the same double */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof num, "%.*g", prec, n->fval);
            if (strtod(num, NULL) == n->fval) break;
        }
        if (!strpbrk(num, ".eEn")) strcat(num, ".0");
        dump_str(b, num);
        return;
    case AST_STRING: dump_quoted(b, n->str, n->str_len); return;
    case AST_IDENT: dump_str(b, n->name); return;
    case AST_REGEX:
        dump_open(b, "regex ");
        dump_quoted(b, n->str, n->str_len);
        break;
    case AST_INTERP: dump_open(b, "interp"); dump_list(b, &n->list); break;
    case AST_LIST: dump_open(b, "list"); dump_list(b, &n->list); break;
    case AST_MAP: dump_open(b, "map"); dump_list(b, &n->list); break;
    case AST_PAIR: dump_open(b, "pair"); dump_child(b, n->a); dump_child(b, n->b); break;
    case AST_BINARY: dump_open(b, op_text(n->op)); dump_child(b, n->a); dump_child(b, n->b); break;
    case AST_UNARY: dump_open(b, op_text(n->op)); dump_child(b, n->a); break;
    case AST_AND: dump_open(b, "and"); dump_child(b, n->a); dump_child(b, n->b); break;
    case AST_OR: dump_open(b, "or"); dump_child(b, n->a); dump_child(b, n->b); break;
    case AST_COND:
        dump_open(b, "?");
        dump_child(b, n->a);
        dump_child(b, n->b);
        dump_child(b, n->c);
        break;
    case AST_CALL: dump_open(b, "call"); dump_child(b, n->a); dump_list(b, &n->list); break;
    case AST_ARG:
        if (!n->name) {
            dump_node(b, n->a);
            return;
        }
        dump_open(b, n->name);
        dump_str(b, ":");
        dump_child(b, n->a);
        break;
    case AST_INDEX: dump_open(b, "index"); dump_child(b, n->a); dump_child(b, n->b); break;
    case AST_FIELD:
        dump_open(b, ".");
        dump_child(b, n->a);
        dump_put(b, " ", 1);
        dump_str(b, n->name);
        break;
    case AST_FN:
        dump_open(b, n->name ? "fn " : "lambda");
        if (n->name) dump_str(b, n->name);
        dump_str(b, " (");
        for (int i = 0; i < n->list.len; i++) {
            if (i) dump_put(b, " ", 1);
            dump_node(b, n->list.items[i]);
        }
        dump_put(b, ")", 1);
        dump_child(b, n->a);
        break;
    case AST_PARAM:
        if (!n->a) {
            dump_str(b, n->name);
            return;
        }
        dump_open(b, n->name);
        dump_child(b, n->a);
        break;
    case AST_FORK:
        dump_open(b, "fork ");
        dump_str(b, n->name);
        dump_child(b, n->a);
        dump_child(b, n->b);
        break;
    case AST_BLOCK: dump_open(b, "block"); dump_list(b, &n->list); break;
    case AST_EXPR_STMT: dump_open(b, "expr"); dump_list(b, &n->list); break;
    case AST_LET:
        dump_open(b, "let ");
        dump_str(b, n->name);
        dump_child(b, n->a);
        break;
    case AST_ASSIGN:
        dump_open(b, op_text(n->op));
        if (n->op != AST_OP_NONE) dump_str(b, "=");
        dump_child(b, n->a);
        dump_child(b, n->b);
        break;
    case AST_IF:
        dump_open(b, "if");
        dump_child(b, n->a);
        dump_child(b, n->b);
        if (n->c) dump_child(b, n->c);
        break;
    case AST_WHILE: dump_open(b, "while"); dump_child(b, n->a); dump_child(b, n->b); break;
    case AST_FOR:
        dump_open(b, "for ");
        dump_str(b, n->name);
        dump_child(b, n->a);
        dump_child(b, n->b);
        break;
    case AST_BREAK: dump_str(b, "(break"); break;
    case AST_CONTINUE: dump_str(b, "(continue"); break;
    case AST_RETURN:
        dump_open(b, "return");
        if (n->a) dump_child(b, n->a);
        break;
    case AST_ROLE: {
        const char *role = role_name((Role)n->op);
        dump_open(b, role ? role : "role?");
        if (n->a) dump_child(b, n->a);
        else dump_list(b, &n->list);
        break;
    }
    case AST_IMPORT:
        dump_open(b, "import ");
        dump_quoted(b, n->str, n->str_len);
        if (n->name) {
            dump_str(b, " as ");
            dump_str(b, n->name);
        }
        break;
    case AST_GRAMMAR:
        dump_open(b, "grammar ");
        dump_str(b, n->name);
        dump_put(b, " ", 1);
        dump_quoted(b, n->str, n->str_len);
        break;
    case AST_PROGRAM: dump_open(b, "program"); dump_list(b, &n->list); break;
    default: dump_str(b, "(?"); break;
    }
    dump_put(b, ")", 1);
}

char *ast_dump(const AstNode *node) {
    DumpBuf b = {0};
    dump_node(&b, node);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
