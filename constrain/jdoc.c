/*
 * constrain/jdoc.c — the JSON reader of jdoc.h: a recursive-descent parser
 * over the text that builds the tree, decodes strings to UTF-8 and keeps
 * number texts. Owns nothing past the tree it returns.
 */
#include "constrain/jdoc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/utf8.h"
#include "constrain/schema_int.h"

typedef struct {
    const char *s;
    size_t n, i;
    int depth, max_depth;
    int rc;
    char *err;
    size_t errcap;
} Rd;

static void where(const Rd *r, size_t at, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t k = 0; k < at && k < r->n; k++) {
        if (r->s[k] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)r->s[k] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void *fail(Rd *r, int code, const char *what) {
    if (r->rc == 0) {
        int l, c;
        where(r, r->i, &l, &c);
        err_fmt(r->err, r->errcap, "JSON line %d col %d: %s", l, c, what);
        r->rc = code;
    }
    return NULL;
}

static void skip_ws(Rd *r) {
    while (r->i < r->n) {
        char c = r->s[r->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        r->i++;
    }
}

static JdValue *node(Rd *r, JdKind k, size_t at) {
    JdValue *v = calloc(1, sizeof *v);
    if (!v) return fail(r, ERR_NOMEM, "out of memory");
    v->kind = k;
    where(r, at, &v->line, &v->col);
    return v;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* Reads a string at r->i (the opening quote) into a malloc'd buffer. */
static char *read_string(Rd *r, size_t *len) {
    r->i++;
    size_t cap = 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) return fail(r, ERR_NOMEM, "out of memory");
    for (;;) {
        if (r->i >= r->n) {
            free(buf);
            return fail(r, ERR_FORMAT, "unterminated string");
        }
        unsigned char c = (unsigned char)r->s[r->i];
        char tmp[8];
        size_t tn = 0;
        if (c == '"') {
            r->i++;
            break;
        } else if (c < 0x20) {
            free(buf);
            return fail(r, ERR_FORMAT, "control character in string");
        } else if (c == '\\') {
            if (r->i + 1 >= r->n) {
                free(buf);
                return fail(r, ERR_FORMAT, "unterminated escape");
            }
            char e = r->s[r->i + 1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char map[] = "\"\\/\b\f\n\r\t";
                tmp[0] = map[simple - "\"\\/bfnrt"];
                tn = 1;
                r->i += 2;
            } else if (e == 'u') {
                uint32_t cp;
                if (r->i + 6 > r->n || hex4(r->s + r->i + 2, &cp) < 0) {
                    free(buf);
                    return fail(r, ERR_FORMAT, "bad \\u escape");
                }
                r->i += 6;
                if (cp >= 0xD800 && cp < 0xDC00) {
                    uint32_t lo;
                    if (r->i + 6 > r->n || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u' ||
                        hex4(r->s + r->i + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                        free(buf);
                        return fail(r, ERR_FORMAT, "lone surrogate in \\u escape");
                    }
                    r->i += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(buf);
                    return fail(r, ERR_FORMAT, "lone surrogate in \\u escape");
                }
                tn = (size_t)utf8_encode(cp, tmp);
            } else {
                free(buf);
                return fail(r, ERR_FORMAT, "bad escape in string");
            }
        } else {
            uint32_t cp;
            int k = utf8_decode(r->s + r->i, r->n - r->i, &cp);
            if (k <= 0) {
                free(buf);
                return fail(r, ERR_FORMAT, "invalid UTF-8 in string");
            }
            memcpy(tmp, r->s + r->i, (size_t)k);
            tn = (size_t)k;
            r->i += (size_t)k;
        }
        if (n + tn + 1 > cap) {
            while (n + tn + 1 > cap) cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                return fail(r, ERR_NOMEM, "out of memory");
            }
            buf = nb;
        }
        memcpy(buf + n, tmp, tn);
        n += tn;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static JdValue *read_value(Rd *r);

static JdValue *read_number(Rd *r) {
    size_t st = r->i, i = r->i;
    bool is_int = true;
    if (i < r->n && r->s[i] == '-') i++;
    if (i < r->n && r->s[i] == '0') {
        i++;
    } else if (i < r->n && r->s[i] >= '1' && r->s[i] <= '9') {
        while (i < r->n && is_digit(r->s[i])) i++;
    } else {
        return fail(r, ERR_FORMAT, "bad number");
    }
    if (i < r->n && r->s[i] == '.') {
        is_int = false;
        i++;
        if (i >= r->n || !is_digit(r->s[i])) return fail(r, ERR_FORMAT, "bad number fraction");
        while (i < r->n && is_digit(r->s[i])) i++;
    }
    if (i < r->n && (r->s[i] == 'e' || r->s[i] == 'E')) {
        is_int = false;
        i++;
        if (i < r->n && (r->s[i] == '+' || r->s[i] == '-')) i++;
        if (i >= r->n || !is_digit(r->s[i])) return fail(r, ERR_FORMAT, "bad number exponent");
        while (i < r->n && is_digit(r->s[i])) i++;
    }
    JdValue *v = node(r, JD_NUMBER, st);
    if (!v) return NULL;
    v->str = malloc(i - st + 1);
    if (!v->str) {
        free(v);
        return fail(r, ERR_NOMEM, "out of memory");
    }
    memcpy(v->str, r->s + st, i - st);
    v->str[i - st] = 0;
    v->len = i - st;
    v->is_int = is_int;
    r->i = i;
    return v;
}

static int push(Rd *r, JdValue *v, JdValue *item, char *key, size_t klen, int *cap) {
    if (v->n == *cap) {
        int nc = *cap ? *cap * 2 : 4;
        JdValue **ni = realloc(v->items, (size_t)nc * sizeof *ni);
        if (!ni) goto oom;
        v->items = ni;
        if (v->kind == JD_OBJECT) {
            char **nk = realloc(v->keys, (size_t)nc * sizeof *nk);
            if (!nk) goto oom;
            v->keys = nk;
            size_t *nl = realloc(v->key_lens, (size_t)nc * sizeof *nl);
            if (!nl) goto oom;
            v->key_lens = nl;
        }
        *cap = nc;
    }
    v->items[v->n] = item;
    if (v->kind == JD_OBJECT) {
        v->keys[v->n] = key;
        v->key_lens[v->n] = klen;
    }
    v->n++;
    return 0;
oom:
    fail(r, ERR_NOMEM, "out of memory");
    return -1;
}

static JdValue *read_container(Rd *r, bool object) {
    if (++r->depth > r->max_depth) return fail(r, ERR_LIMIT, "JSON nested too deeply");
    JdValue *v = node(r, object ? JD_OBJECT : JD_ARRAY, r->i);
    if (!v) return NULL;
    int cap = 0;
    r->i++;
    skip_ws(r);
    char close = object ? '}' : ']';
    if (r->i < r->n && r->s[r->i] == close) {
        r->i++;
        r->depth--;
        return v;
    }
    for (;;) {
        char *key = NULL;
        size_t klen = 0;
        skip_ws(r);
        if (object) {
            if (r->i >= r->n || r->s[r->i] != '"') {
                fail(r, ERR_FORMAT, "expected a key string");
                goto bad;
            }
            key = read_string(r, &klen);
            if (!key) goto bad;
            skip_ws(r);
            if (r->i >= r->n || r->s[r->i] != ':') {
                free(key);
                fail(r, ERR_FORMAT, "expected ':'");
                goto bad;
            }
            r->i++;
        }
        JdValue *item = read_value(r);
        if (!item) {
            free(key);
            goto bad;
        }
        if (push(r, v, item, key, klen, &cap) < 0) {
            free(key);
            jd_free(item);
            goto bad;
        }
        skip_ws(r);
        if (r->i < r->n && r->s[r->i] == ',') {
            r->i++;
            continue;
        }
        if (r->i < r->n && r->s[r->i] == close) {
            r->i++;
            break;
        }
        fail(r, ERR_FORMAT, object ? "expected ',' or '}'" : "expected ',' or ']'");
        goto bad;
    }
    r->depth--;
    return v;
bad:
    jd_free(v);
    return NULL;
}

static JdValue *read_word(Rd *r, const char *w, JdKind k) {
    size_t n = strlen(w);
    if (r->n - r->i < n || memcmp(r->s + r->i, w, n) != 0) return fail(r, ERR_FORMAT, "unexpected text");
    JdValue *v = node(r, k, r->i);
    r->i += n;
    return v;
}

static JdValue *read_value(Rd *r) {
    skip_ws(r);
    if (r->i >= r->n) return fail(r, ERR_FORMAT, "unexpected end of text");
    char c = r->s[r->i];
    switch (c) {
    case '{': return read_container(r, true);
    case '[': return read_container(r, false);
    case '"': {
        size_t at = r->i, len;
        char *s = read_string(r, &len);
        if (!s) return NULL;
        JdValue *v = node(r, JD_STRING, at);
        if (!v) {
            free(s);
            return NULL;
        }
        v->str = s;
        v->len = len;
        return v;
    }
    case 't': return read_word(r, "true", JD_TRUE);
    case 'f': return read_word(r, "false", JD_FALSE);
    case 'n': return read_word(r, "null", JD_NULL);
    default:
        if (c == '-' || is_digit(c)) return read_number(r);
        return fail(r, ERR_FORMAT, "unexpected character");
    }
}

int jd_parse(const char *s, size_t n, int max_depth, JdValue **out, char *err, size_t errcap) {
    Rd r = {.s = s, .n = n, .max_depth = max_depth > 0 ? max_depth : 1000, .err = err, .errcap = errcap};
    *out = NULL;
    JdValue *v = read_value(&r);
    if (v) {
        skip_ws(&r);
        if (r.i != r.n) {
            jd_free(v);
            v = NULL;
            fail(&r, ERR_FORMAT, "text after the JSON value");
        }
    }
    if (!v) return r.rc ? r.rc : ERR_FORMAT;
    *out = v;
    return 0;
}

void jd_free(JdValue *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) {
        jd_free(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_lens);
    free(v->str);
    free(v);
}

const JdValue *jd_get(const JdValue *obj, const char *key) {
    if (!obj || obj->kind != JD_OBJECT) return NULL;
    size_t kl = strlen(key);
    for (int i = obj->n - 1; i >= 0; i--)
        if (obj->key_lens[i] == kl && memcmp(obj->keys[i], key, kl) == 0) return obj->items[i];
    return NULL;
}

int jd_num_cmp(const char *a, const char *b) {
    Dec x, y;
    if (dec_parse(a, &x) < 0 || dec_parse(b, &y) < 0) return strcmp(a, b) < 0 ? -1 : strcmp(a, b) > 0;
    int c = dec_cmp(&x, &y);
    dec_free(&x);
    dec_free(&y);
    return c;
}

bool jd_equal(const JdValue *a, const JdValue *b) {
    if (a->kind != b->kind) return false;
    switch (a->kind) {
    case JD_NULL:
    case JD_TRUE:
    case JD_FALSE: return true;
    case JD_NUMBER: return jd_num_cmp(a->str, b->str) == 0;
    case JD_STRING: return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
    case JD_ARRAY:
        if (a->n != b->n) return false;
        for (int i = 0; i < a->n; i++)
            if (!jd_equal(a->items[i], b->items[i])) return false;
        return true;
    case JD_OBJECT:
        if (a->n != b->n) return false;
        for (int i = 0; i < a->n; i++) {
            const JdValue *o = jd_get(b, a->keys[i]);
            if (!o || !jd_equal(jd_get(a, a->keys[i]), o)) return false;
        }
        return true;
    }
    return false;
}
