/*
 * runtime/tokenizer.c — vocabulary tables, encoding and decoding.
 *
 * Owns: the derived tables (vocabulary hash map, merge pair map, byte
 * symbols, decode pieces, added-token trie), the encode pipeline and the
 * accessors. Loaders live in tok_load.c; they fill a Tokenizer through the
 * builder functions of tok_internal.h and call tok_finish.
 *
 * Merging (one piece):
 *
 *   symbols   [h][e][l][l][o]         ids; prev/next links; dead = TOK_DEAD
 *   heap      (prio, pos) of every adjacent pair found in the pair map
 *   loop      pop the best pair; skip it when either side changed since it
 *             was pushed; else merge right into left and push the two new
 *             neighbour pairs
 *
 * With BPE ranks this is Hugging Face's Word::merge_all and llama.cpp's
 * llm_tokenizer_bpe_session; with prio = -score it is llama.cpp's SPM
 * session (highest score first, leftmost on ties).
 */
#include "base/err.h"
#include "runtime/tok_internal.h"
#include "runtime/tok_nfc.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_DEAD INT32_MIN
#define TOK_CACHE_MAX_WORD 256      /* longer pieces are not cached */
#define TOK_CACHE_MAX_ENTRIES 32768 /* then the cache is cleared */

/* ---- small helpers -------------------------------------------------------- */


static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h ^= v * 0xbf58476d1ce4e5b9ull;
        h = ((h << 31) | (h >> 33)) * 0x94d049bb133111ebull;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)s[i] << (8 * i);
    h ^= v * 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    h *= 0xd6e8feb86659fd93ull;
    h ^= h >> 32;
    return h;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return ERR_NOMEM;
    *p = q;
    *cap = nc;
    return 0;
}

/* Length of the UTF-8 sequence at s (n bytes left) if valid, else 1 (an
 * invalid byte is a piece of its own). */
static int utf8_len(const uint8_t *s, size_t n)
{
    uint32_t cp;
    int len = utf8_decode((const char *)s, n, &cp);
    return len ? len : 1;
}

static uint32_t utf8_cp(const uint8_t *s, int len)
{
    switch (len) {
    case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    case 4:
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
               ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
    default: return s[0];
    }
}


/* GPT-2's bytes_to_unicode: printable Latin-1 bytes map to themselves, the
 * other 68 bytes, in order, to U+0100..U+0143. */
uint32_t tok_byte_to_cp(uint8_t b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)
        return b;
    if (b <= 32)
        return 256u + b;
    if (b >= 127 && b <= 160)
        return 256u + 33u + (b - 127u);
    return 256u + 67u; /* 173, soft hyphen */
}

int tok_cp_to_byte(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp >= 256 && cp <= 288)
        return (int)(cp - 256);
    if (cp >= 289 && cp <= 322)
        return (int)(cp - 289 + 127);
    if (cp == 323)
        return 173;
    return -1;
}

static bool is_space_byte(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

static bool is_word_byte(uint8_t c)
{
    return isalnum(c) || c == '_' || c >= 0x80;
}

/* ---- vocabulary map ------------------------------------------------------- */

static const char *ttext(const Tokenizer *t, int32_t id) { return t->text_pool + t->text_off[id]; }

static int32_t vocab_get(const Tokenizer *t, const char *s, size_t n)
{
    const TokStrMap *m = &t->vocab;
    if (!m->slots)
        return -1;
    uint64_t h = hash_bytes(s, n);
    uint32_t h32 = (uint32_t)(h >> 32);
    for (uint32_t i = (uint32_t)h & m->mask;; i = (i + 1) & m->mask) {
        int32_t id = m->slots[i];
        if (id < 0)
            return -1;
        if (m->hashes[i] == h32 && t->text_len[id] == n && memcmp(ttext(t, id), s, n) == 0)
            return id;
    }
}

/* Later duplicates replace earlier ones (llama.cpp's token_to_id does so). */
static int vocab_build(Tokenizer *t)
{
    TokStrMap *m = &t->vocab;
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n_vocab * 2u)
        cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    m->hashes = malloc(cap * sizeof *m->hashes);
    if (!m->slots || !m->hashes)
        return ERR_NOMEM;
    memset(m->slots, 0xff, cap * sizeof *m->slots);
    m->mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t n = t->text_len[id];
        const char *s = ttext(t, id);
        uint64_t h = hash_bytes(s, n);
        uint32_t h32 = (uint32_t)(h >> 32);
        for (uint32_t i = (uint32_t)h & m->mask;; i = (i + 1) & m->mask) {
            int32_t o = m->slots[i];
            if (o < 0) {
                m->slots[i] = id;
                m->hashes[i] = h32;
                break;
            }
            if (m->hashes[i] == h32 && t->text_len[o] == n && memcmp(ttext(t, o), s, n) == 0) {
                m->slots[i] = id;
                break;
            }
        }
    }
    return 0;
}

/* ---- pair map ------------------------------------------------------------- */

static uint32_t pair_hash(uint64_t key)
{
    key ^= key >> 31; /* splitmix64's finalizer: every key bit reaches the low bits */
    key *= 0x7fb5d329728ea185ull;
    key ^= key >> 27;
    key *= 0x81dadef4bc2dd44dull;
    key ^= key >> 33;
    return (uint32_t)key;
}

static const TokPair *pair_get(const TokPairMap *m, int32_t l, int32_t r)
{
    if (!m->slots)
        return NULL;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        const TokPair *p = &m->slots[i];
        if (p->key == key)
            return p;
        if (p->key == UINT64_MAX)
            return NULL;
    }
}

static int pair_init(TokPairMap *m, size_t n)
{
    uint32_t cap = 16;
    while (cap < n * 2)
        cap *= 2;
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots)
        return ERR_NOMEM;
    for (uint32_t i = 0; i < cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return 0;
}

/* First insertion wins (llama.cpp's bpe_ranks.emplace). */
static void pair_put(TokPairMap *m, int32_t l, int32_t r, float prio, int32_t id)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint32_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        TokPair *p = &m->slots[i];
        if (p->key == key)
            return;
        if (p->key == UINT64_MAX) {
            p->key = key;
            p->prio = prio;
            p->id = id;
            m->n++;
            return;
        }
    }
}

/* ---- building ------------------------------------------------------------- */

Tokenizer *tok_alloc(void)
{
    Tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->bos = t->eos = t->eot = t->eom = t->unk = t->pad = -1;
    for (int i = 0; i < 256; i++)
        t->byte_sym[i] = -1;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        free(t);
        return NULL;
    }
    t->mu_init = true;
    return t;
}

int tok_set_vocab(Tokenizer *t, int32_t n)
{
    if (n <= 0 || t->n_vocab)
        return ERR_ARG;
    t->n_vocab = n;
    t->text_off = calloc((size_t)n, sizeof *t->text_off);
    t->text_len = calloc((size_t)n, sizeof *t->text_len);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->attr = calloc((size_t)n, sizeof *t->attr);
    if (!t->text_off || !t->text_len || !t->score || !t->attr)
        return ERR_NOMEM;
    /* "set" marker: an unset token has attr 0 and is caught by tok_finish */
    return 0;
}

int tok_set_token(Tokenizer *t, int32_t id, const char *text, size_t len, float score, unsigned attr)
{
    if (id < 0 || id >= t->n_vocab || len > UINT32_MAX / 2)
        return ERR_ARG;
    if (grow((void **)&t->text_pool, &t->text_pool_cap, t->text_pool_len + len + 1, 1))
        return ERR_NOMEM;
    memcpy(t->text_pool + t->text_pool_len, text, len);
    t->text_pool[t->text_pool_len + len] = 0;
    t->text_off[id] = (uint32_t)t->text_pool_len;
    t->text_len[id] = (uint32_t)len;
    t->text_pool_len += len + 1;
    if (t->text_pool_len > UINT32_MAX)
        return ERR_NOMEM;
    t->score[id] = score;
    t->attr[id] = (uint8_t)(attr ? attr : TOK_ATTR_NORMAL);
    return 0;
}

int tok_add_merge(Tokenizer *t, const char *l, size_t llen, const char *r, size_t rlen)
{
    if (t->n_merges == t->cap_merges) {
        size_t nc = t->cap_merges ? t->cap_merges * 2 : 1024;
        char **a = realloc(t->merge_l, nc * sizeof *a);
        if (!a)
            return ERR_NOMEM;
        t->merge_l = a;
        char **b = realloc(t->merge_r, nc * sizeof *b);
        if (!b)
            return ERR_NOMEM;
        t->merge_r = b;
        t->cap_merges = nc;
    }
    char *a = malloc(llen + 1), *b = malloc(rlen + 1);
    if (!a || !b) {
        free(a);
        free(b);
        return ERR_NOMEM;
    }
    memcpy(a, l, llen);
    a[llen] = 0;
    memcpy(b, r, rlen);
    b[rlen] = 0;
    t->merge_l[t->n_merges] = a;
    t->merge_r[t->n_merges] = b;
    t->n_merges++;
    return 0;
}

static char *dupn(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p) {
        if (n)
            memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

int tok_add_norm(Tokenizer *t, TokNormKind kind, const char *a, size_t alen, const char *b, size_t blen)
{
    TokNormStep *s = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *s);
    if (!s)
        return ERR_NOMEM;
    t->norm = s;
    TokNormStep *st = &s[t->n_norm];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    if (kind == TOK_NORM_REPLACE && alen == 0)
        return ERR_ARG;
    st->a = dupn(a ? a : "", alen);
    st->b = dupn(b ? b : "", blen);
    if (!st->a || !st->b) {
        free(st->a);
        free(st->b);
        return ERR_NOMEM;
    }
    st->alen = alen;
    st->blen = blen;
    t->n_norm++;
    return 0;
}

static TokPreStep *pre_push(Tokenizer *t)
{
    TokPreStep *s = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *s);
    if (!s)
        return NULL;
    t->pre = s;
    memset(&s[t->n_pre], 0, sizeof *s);
    return &s[t->n_pre++];
}

/* Unicode White_Space: what \s means to Oniguruma (Hugging Face) and to
 * llama.cpp. PCRE2's \s (with UCP) also matches U+180E. */
#define WS_SET "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

/* Rewrites \s and \S (outside classes) and \s (inside classes) to WS_SET.
 * Returns a malloc'd pattern or NULL on allocation failure. */
static char *rewrite_ws(const char *p, size_t n, size_t *outlen)
{
    size_t cap = n * 8 + sizeof WS_SET * 4 + 16, m = 0;
    char *o = malloc(cap);
    if (!o)
        return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        if (m + sizeof WS_SET + 8 > cap) {
            cap *= 2;
            char *q = realloc(o, cap);
            if (!q) {
                free(o);
                return NULL;
            }
            o = q;
        }
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's' || (d == 'S' && !in_class)) {
                const char *pre = in_class ? "" : d == 's' ? "[" : "[^";
                m += (size_t)sprintf(o + m, "%s%s%s", pre, WS_SET, in_class ? "" : "]");
            } else {
                o[m++] = c;
                o[m++] = d;
            }
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            o[m++] = c;
            /* a ']' right after '[' or '[^' is a literal */
            if (i + 1 < n && p[i + 1] == '^')
                o[m++] = p[++i];
            if (i + 1 < n && p[i + 1] == ']')
                o[m++] = p[++i];
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* [:alpha:] */
            const char *e = memchr(p + i + 2, ']', n - i - 2);
            size_t l = e ? (size_t)(e - (p + i)) + 1 : 1;
            memcpy(o + m, p + i, l);
            m += l;
            i += l - 1;
            continue;
        }
        if (in_class && c == ']')
            in_class = false;
        o[m++] = c;
    }
    o[m] = 0;
    *outlen = m;
    return o;
}

int tok_add_split(Tokenizer *t, const char *pattern, size_t len, bool literal,
                  TokSplitBehavior behavior, bool invert, char *err, size_t errcap)
{
    int ec;
    PCRE2_SIZE eo;
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    size_t rl = len;
    char *rw = literal ? NULL : rewrite_ws(pattern, len, &rl);
    if (!literal && !rw)
        return ERR_NOMEM;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)(rw ? rw : pattern), rl, opts, &ec, &eo, NULL);
    free(rw);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(ec, msg, sizeof msg);
        err_fmt(err, errcap, "pre-tokenizer regex /%.*s/ at offset %zu: %s", (int)(len > 200 ? 200 : len),
                 pattern, (size_t)eo, (const char *)msg);
        return ERR_UNSUPPORTED;
    }
    /* JIT when the library has it; the interpreter otherwise. */
    bool jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    TokPreStep *s = pre_push(t);
    if (!s) {
        pcre2_code_free(re);
        return ERR_NOMEM;
    }
    s->jit = jit;
    s->kind = TOK_PRE_SPLIT;
    s->re = re;
    s->behavior = behavior;
    s->invert = invert;
    return 0;
}

int tok_add_prefix_space(Tokenizer *t)
{
    TokPreStep *s = pre_push(t);
    if (!s)
        return ERR_NOMEM;
    s->kind = TOK_PRE_PREFIX_SPACE;
    return 0;
}

int tok_add_metaspace(Tokenizer *t, const char *repl, size_t repl_len, TokPrependScheme scheme, bool split)
{
    if (repl_len == 0)
        return ERR_ARG;
    TokPreStep *s = pre_push(t);
    if (!s)
        return ERR_NOMEM;
    s->kind = TOK_PRE_METASPACE;
    s->repl = dupn(repl, repl_len);
    if (!s->repl)
        return ERR_NOMEM;
    s->repl_len = repl_len;
    s->scheme = scheme;
    s->split = split;
    return 0;
}

int tok_add_added(Tokenizer *t, int32_t id, bool special, bool lstrip, bool rstrip, bool single_word)
{
    for (int i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) {
            t->added[i].special = special;
            t->added[i].lstrip = lstrip;
            t->added[i].rstrip = rstrip;
            t->added[i].single_word = single_word;
            return 0;
        }
    TokAdded *a = realloc(t->added, (size_t)(t->n_added + 1) * sizeof *a);
    if (!a)
        return ERR_NOMEM;
    t->added = a;
    a[t->n_added++] = (TokAdded){ .id = id, .special = special, .lstrip = lstrip, .rstrip = rstrip,
                                  .single_word = single_word };
    return 0;
}

int tok_set_template(Tokenizer *t, const char *s, size_t len)
{
    free(t->chat_template);
    t->chat_template = dupn(s, len);
    return t->chat_template ? 0 : ERR_NOMEM;
}

/* ---- finishing ------------------------------------------------------------ */

static int trie_node(Tokenizer *t, uint8_t byte)
{
    if (t->n_trie == t->cap_trie) {
        int nc = t->cap_trie ? t->cap_trie * 2 : 256;
        TokTrieNode *n = realloc(t->trie, (size_t)nc * sizeof *n);
        if (!n)
            return -1;
        t->trie = n;
        t->cap_trie = nc;
    }
    TokTrieNode *n = &t->trie[t->n_trie];
    n->first_child = n->next_sibling = n->added = -1;
    n->byte = byte;
    return t->n_trie++;
}

static int trie_build(Tokenizer *t)
{
    if (!t->n_added)
        return 0;
    if (trie_node(t, 0) < 0)
        return ERR_NOMEM;
    for (int k = 0; k < t->n_added; k++) {
        int32_t id = t->added[k].id;
        const uint8_t *s = (const uint8_t *)ttext(t, id);
        size_t n = t->text_len[id];
        if (n == 0)
            continue;
        t->added_first[s[0] >> 3] |= (uint8_t)(1u << (s[0] & 7));
        int cur = 0;
        for (size_t i = 0; i < n; i++) {
            int c = t->trie[cur].first_child;
            while (c >= 0 && t->trie[c].byte != s[i])
                c = t->trie[c].next_sibling;
            if (c < 0) {
                c = trie_node(t, s[i]);
                if (c < 0)
                    return ERR_NOMEM;
                t->trie[c].next_sibling = t->trie[cur].first_child;
                t->trie[cur].first_child = c;
            }
            cur = c;
        }
        t->trie[cur].added = k;
    }
    return 0;
}

static int parse_byte_token(const char *s, size_t n)
{
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>' || !isxdigit((unsigned char)s[3]) ||
        !isxdigit((unsigned char)s[4]))
        return -1;
    char hex[3] = { s[3], s[4], 0 };
    return (int)strtol(hex, NULL, 16);
}

static int pieces_build(Tokenizer *t)
{
    size_t total = 0;
    for (int32_t id = 0; id < t->n_vocab; id++)
        total += t->text_len[id] + 1;
    t->piece_pool = malloc(total + 1);
    t->piece_off = malloc((size_t)t->n_vocab * sizeof *t->piece_off);
    t->piece_len = malloc((size_t)t->n_vocab * sizeof *t->piece_len);
    if (!t->piece_pool || !t->piece_off || !t->piece_len)
        return ERR_NOMEM;
    size_t pos = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)ttext(t, id);
        size_t n = t->text_len[id];
        char *o = t->piece_pool + pos;
        size_t m = 0;
        unsigned a = t->attr[id];
        int b;
        if (a & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) {
            memcpy(o, s, n);
            m = n;
        } else if ((a & TOK_ATTR_BYTE) && (b = parse_byte_token((const char *)s, n)) >= 0) {
            o[0] = (char)b;
            m = 1;
        } else if (t->byte_level) {
            for (size_t i = 0; i < n;) {
                int l = utf8_len(s + i, n - i);
                int byte = l > 1 || s[i] < 0x80 ? tok_cp_to_byte(utf8_cp(s + i, l)) : -1;
                if (byte >= 0)
                    o[m++] = (char)byte;
                else {
                    memcpy(o + m, s + i, (size_t)l); /* not a byte symbol: kept as written */
                    m += (size_t)l;
                }
                i += (size_t)l;
            }
        } else if (t->metaspace_decode) {
            for (size_t i = 0; i < n;) {
                if (i + 3 <= n && s[i] == 0xE2 && s[i + 1] == 0x96 && s[i + 2] == 0x81) {
                    o[m++] = ' ';
                    i += 3;
                } else
                    o[m++] = (char)s[i++];
            }
        } else {
            memcpy(o, s, n);
            m = n;
        }
        t->piece_off[id] = (uint32_t)pos;
        t->piece_len[id] = (uint32_t)m;
        pos += m;
    }
    return 0;
}

static int pairs_from_merges(Tokenizer *t, char *err, size_t errcap)
{
    if (pair_init(&t->pairs, t->n_merges))
        return ERR_NOMEM;
    char *buf = NULL;
    size_t cap = 0;
    size_t skipped = 0;
    for (size_t i = 0; i < t->n_merges; i++) {
        size_t ll = strlen(t->merge_l[i]), rl = strlen(t->merge_r[i]);
        int32_t l = vocab_get(t, t->merge_l[i], ll);
        int32_t r = vocab_get(t, t->merge_r[i], rl);
        if (grow((void **)&buf, &cap, ll + rl + 1, 1)) {
            free(buf);
            return ERR_NOMEM;
        }
        memcpy(buf, t->merge_l[i], ll);
        memcpy(buf + ll, t->merge_r[i], rl);
        int32_t m = vocab_get(t, buf, ll + rl);
        if (l < 0 || r < 0 || m < 0) {
            skipped++;
            continue;
        }
        pair_put(&t->pairs, l, r, (float)i, m);
    }
    free(buf);
    if (t->n_merges && skipped == t->n_merges) {
        err_fmt(err, errcap, "none of the %zu merges refers to vocabulary tokens", t->n_merges);
        return ERR_FORMAT;
    }
    return 0;
}

/* SentencePiece: every token that splits into two tokens (at a character
 * boundary) is a possible merge of those two, ranked by its own score. */
static int pairs_from_scores(Tokenizer *t)
{
    size_t count = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && pair_init(&t->pairs, count + 1))
            return ERR_NOMEM;
        for (int32_t id = 0; id < t->n_vocab; id++) {
            const uint8_t *s = (const uint8_t *)ttext(t, id);
            size_t n = t->text_len[id];
            for (size_t k = (size_t)utf8_len(s, n); k < n; k += (size_t)utf8_len(s + k, n - k)) {
                int32_t l = vocab_get(t, (const char *)s, k);
                if (l < 0)
                    continue;
                int32_t r = vocab_get(t, (const char *)s + k, n - k);
                if (r < 0)
                    continue;
                if (pass == 0)
                    count++;
                else if (vocab_get(t, (const char *)s, n) == id)
                    pair_put(&t->pairs, l, r, -t->score[id], id);
            }
        }
    }
    return 0;
}

/* Token texts llama.cpp recognizes by name (llama-vocab.cpp): end-of-turn
 * candidates in order of preference, the end-of-generation list, and the
 * fill-in-the-middle roles whose pad/repo/separator tokens also end
 * generation. */
#define FWBAR "\xEF\xBD\x9C"  /* U+FF5C, DeepSeek's fullwidth bar */
#define LOWBAR "\xE2\x96\x81" /* U+2581 */
static const char *const eot_names[] = {
    "<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "<" FWBAR "end" LOWBAR "of" LOWBAR "sentence" FWBAR ">", "<end_of_utterance>",
};
static const char *const eog_names[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
    "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
    "<" FWBAR "end" LOWBAR "of" LOWBAR "sentence" FWBAR ">",
    /* FIM pad / repo / separator */
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>",
    "<REPO>", "<reponame>", "<|file_sep|>",
};
static const char *const fim_names[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<" FWBAR "fim" LOWBAR "begin" FWBAR ">", "<PRE>",
    LOWBAR "<PRE>", "<|code_prefix|>", "<|prefix|>",
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<" FWBAR "fim" LOWBAR "hole" FWBAR ">", "<SUF>",
    LOWBAR "<SUF>", "<|code_suffix|>", "<|suffix|>",
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<" FWBAR "fim" LOWBAR "end" FWBAR ">", "<MID>",
    LOWBAR "<MID>", "<|code_middle|>", "<|middle|>",
};

bool tok_llama_control_name(const char *s, size_t n)
{
    /* every name starts with one of these: skip the lists for most tokens */
    if (n < 3 || n > 40 || !(s[0] == '<' || s[0] == '_' || s[0] == '[' || s[0] == '\xE2'))
        return false;
    const char *const *lists[] = { eot_names, eog_names, fim_names };
    size_t counts[] = { sizeof eot_names / sizeof eot_names[0], sizeof eog_names / sizeof eog_names[0],
                        sizeof fim_names / sizeof fim_names[0] };
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < counts[l]; i++)
            if (strlen(lists[l][i]) == n && memcmp(lists[l][i], s, n) == 0)
                return true;
    return n == 10 && memcmp(s, "<|eom_id|>", 10) == 0;
}

static int eog_add(Tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab)
        return 0;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return 0;
    int32_t *e = realloc(t->eog, (size_t)(t->n_eog + 1) * sizeof *e);
    if (!e)
        return ERR_NOMEM;
    t->eog = e;
    e[t->n_eog++] = id;
    return 0;
}

int tok_finish(Tokenizer *t, char *err, size_t errcap)
{
    int rc;
    if (t->n_vocab <= 0) {
        err_fmt(err, errcap, "empty vocabulary");
        return ERR_FORMAT;
    }
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (!t->attr[id]) {
            err_fmt(err, errcap, "token %d has no text (vocabulary ids must be dense)", id);
            return ERR_FORMAT;
        }
    if ((rc = vocab_build(t)))
        return rc;

    /* byte symbols */
    for (int b = 0; b < 256; b++) {
        char buf[8];
        int n;
        if (t->byte_level)
            n = utf8_encode(tok_byte_to_cp((uint8_t)b), buf);
        else
            n = snprintf(buf, sizeof buf, "<0x%02X>", b);
        t->byte_sym[b] = vocab_get(t, buf, (size_t)n);
        if (!t->byte_level && t->byte_sym[b] >= 0 && (t->attr[t->byte_sym[b]] & TOK_ATTR_NORMAL) &&
            t->byte_fallback)
            t->attr[t->byte_sym[b]] = TOK_ATTR_BYTE;
    }
    /* A byte-level vocabulary may lack the symbols of bytes that never occur
     * in UTF-8 (SmolLM2 lacks 21): such bytes are dropped, as llama.cpp does. */
    /* SentencePiece-style text is one long piece; if no token continues a
     * word into a following "▁", merges never cross that boundary and the
     * piece may be cut there (shorter merges, and the word cache works). */
    if (!t->byte_level) {
        t->meta_split = true;
        for (int32_t id = 0; id < t->n_vocab && t->meta_split; id++) {
            const char *s = ttext(t, id);
            size_t n = t->text_len[id];
            for (size_t i = 1; i + 3 <= n; i++)
                if (memcmp(s + i, "\xE2\x96\x81", 3) == 0 && (i < 3 || memcmp(s + i - 3, "\xE2\x96\x81", 3) != 0)) {
                    t->meta_split = false;
                    break;
                }
        }
    }

    if (t->model == TOK_MODEL_SPM)
        rc = pairs_from_scores(t);
    else
        rc = pairs_from_merges(t, err, errcap);
    if (rc)
        return rc;
    for (size_t i = 0; i < t->n_merges; i++) {
        free(t->merge_l[i]);
        free(t->merge_r[i]);
    }
    free(t->merge_l);
    free(t->merge_r);
    t->merge_l = t->merge_r = NULL;
    t->n_merges = t->cap_merges = 0;

    for (int k = 0; k < t->n_added; k++)
        if (t->added[k].id < 0 || t->added[k].id >= t->n_vocab) {
            err_fmt(err, errcap, "added token id %d outside the vocabulary (%d)", t->added[k].id, t->n_vocab);
            return ERR_FORMAT;
        }
    if ((rc = trie_build(t)))
        return rc;
    if ((rc = pieces_build(t)))
        return rc;

    int32_t *ids[] = { &t->bos, &t->eos, &t->eot, &t->eom, &t->unk, &t->pad };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= t->n_vocab)
            *ids[i] = -1;
    if (t->eot < 0)
        for (size_t i = 0; i < sizeof eot_names / sizeof eot_names[0] && t->eot < 0; i++)
            t->eot = vocab_get(t, eot_names[i], strlen(eot_names[i]));
    if (t->eom < 0)
        t->eom = vocab_get(t, "<|eom_id|>", 10);
    if ((rc = eog_add(t, t->eos)) || (rc = eog_add(t, t->eot)) || (rc = eog_add(t, t->eom)))
        return rc;
    for (size_t i = 0; i < sizeof eog_names / sizeof eog_names[0]; i++)
        if ((rc = eog_add(t, vocab_get(t, eog_names[i], strlen(eog_names[i])))))
            return rc;
    if (t->add_bos && t->bos < 0) {
        err_fmt(err, errcap, "the tokenizer adds a BOS token but has none");
        return ERR_FORMAT;
    }
    if (t->add_eos && t->eos < 0) {
        err_fmt(err, errcap, "the tokenizer adds an EOS token but has none");
        return ERR_FORMAT;
    }

    t->md = pcre2_match_data_create(4, NULL);
    if (!t->md)
        return ERR_NOMEM;
    return 0;
}

/* ---- freeing -------------------------------------------------------------- */

static void cache_clear(TokCache *c)
{
    if (c->slots)
        for (uint32_t i = 0; i <= c->mask; i++)
            c->slots[i].key_len = UINT32_MAX;
    c->n = 0;
    c->keys_len = 0;
    c->ids_len = 0;
}

void tok_free(Tokenizer *t)
{
    if (!t)
        return;
    free(t->text_pool);
    free(t->text_off);
    free(t->text_len);
    free(t->score);
    free(t->attr);
    free(t->piece_pool);
    free(t->piece_off);
    free(t->piece_len);
    free(t->vocab.slots);
    free(t->vocab.hashes);
    free(t->pairs.slots);
    for (size_t i = 0; i < t->n_merges; i++) {
        free(t->merge_l[i]);
        free(t->merge_r[i]);
    }
    free(t->merge_l);
    free(t->merge_r);
    for (int i = 0; i < t->n_norm; i++) {
        free(t->norm[i].a);
        free(t->norm[i].b);
    }
    free(t->norm);
    for (int i = 0; i < t->n_pre; i++) {
        if (t->pre[i].re)
            pcre2_code_free(t->pre[i].re);
        free(t->pre[i].repl);
    }
    free(t->pre);
    free(t->added);
    free(t->trie);
    free(t->eog);
    free(t->chat_template);
    if (t->md)
        pcre2_match_data_free(t->md);
    free(t->cache.slots);
    free(t->cache.keys);
    free(t->cache.ids);
    free(t->seg);
    free(t->arena);
    free(t->pieces);
    free(t->pieces2);
    free(t->sym);
    free(t->sym_prev);
    free(t->sym_next);
    free(t->heap);
    if (t->mu_init)
        pthread_mutex_destroy(&t->mu);
    free(t);
}

void tok_ids_free(TokIds *v)
{
    free(v->ids);
    v->ids = NULL;
    v->n = v->cap = 0;
}

/* ---- encoding: output, cache ---------------------------------------------- */

static int ids_push(TokIds *v, int32_t id)
{
    if (v->n == v->cap && grow((void **)&v->ids, &v->cap, v->n + 1, sizeof *v->ids))
        return ERR_NOMEM;
    v->ids[v->n++] = id;
    return 0;
}

static int ids_append(TokIds *v, const int32_t *ids, size_t n)
{
    if (grow((void **)&v->ids, &v->cap, v->n + n, sizeof *v->ids))
        return ERR_NOMEM;
    memcpy(v->ids + v->n, ids, n * sizeof *ids);
    v->n += n;
    return 0;
}

static const TokCacheEntry *cache_get(const TokCache *c, const char *w, size_t n, uint64_t h)
{
    if (!c->slots)
        return NULL;
    for (uint32_t i = (uint32_t)h & c->mask;; i = (i + 1) & c->mask) {
        const TokCacheEntry *e = &c->slots[i];
        if (e->key_len == UINT32_MAX)
            return NULL;
        if (e->hash == h && e->key_len == n && memcmp(c->keys + e->key_off, w, n) == 0)
            return e;
    }
}

/* Best effort: a failed allocation only means no caching. */
static void cache_put(TokCache *c, const char *w, size_t n, uint64_t h, const int32_t *ids, size_t nids)
{
    if (!c->slots) {
        uint32_t cap = TOK_CACHE_MAX_ENTRIES * 2;
        c->slots = malloc(cap * sizeof *c->slots);
        if (!c->slots)
            return;
        c->mask = cap - 1;
        cache_clear(c);
    }
    if (c->n >= TOK_CACHE_MAX_ENTRIES)
        cache_clear(c);
    if (grow((void **)&c->keys, &c->keys_cap, c->keys_len + n, 1) ||
        grow((void **)&c->ids, &c->ids_cap, c->ids_len + nids, sizeof *c->ids))
        return;
    uint32_t i = (uint32_t)h & c->mask;
    while (c->slots[i].key_len != UINT32_MAX)
        i = (i + 1) & c->mask;
    TokCacheEntry *e = &c->slots[i];
    e->hash = h;
    e->key_off = (uint32_t)c->keys_len;
    e->key_len = (uint32_t)n;
    e->ids_off = (uint32_t)c->ids_len;
    e->ids_n = (uint32_t)nids;
    memcpy(c->keys + c->keys_len, w, n);
    c->keys_len += n;
    memcpy(c->ids + c->ids_len, ids, nids * sizeof *ids);
    c->ids_len += nids;
    c->n++;
}

/* ---- encoding: merging ---------------------------------------------------- */

typedef struct {
    float prio;
    int32_t pos, l, r, id;
} HeapItem;

static bool heap_less(const HeapItem *a, const HeapItem *b)
{
    return a->prio < b->prio || (a->prio == b->prio && a->pos < b->pos);
}

static int heap_push(Tokenizer *t, size_t *n, HeapItem it)
{
    if (grow(&t->heap, &t->cap_heap, *n + 1, sizeof(HeapItem)))
        return ERR_NOMEM;
    HeapItem *h = t->heap;
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
    return 0;
}

static HeapItem heap_pop(Tokenizer *t, size_t *n)
{
    HeapItem *h = t->heap;
    HeapItem top = h[0];
    HeapItem last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static int try_pair(Tokenizer *t, size_t *hn, int32_t a, int32_t b)
{
    int32_t l = t->sym[a], r = t->sym[b];
    if (l < 0 || r < 0)
        return 0;
    const TokPair *p = pair_get(&t->pairs, l, r);
    if (!p)
        return 0;
    return heap_push(t, hn, (HeapItem){ p->prio, a, l, r, p->id });
}

#define TOK_SMALL_WORD 64

/* Short pieces (almost all of them): keep the current pair of every live
 * symbol in an array and scan for the best each round. Same result as the
 * heap: the lowest priority, leftmost on ties. */
static void merge_small(Tokenizer *t, size_t n)
{
    int32_t *sym = t->sym, *next = t->sym_next;
    float prio[TOK_SMALL_WORD];
    int32_t to[TOK_SMALL_WORD];
    int32_t prev[TOK_SMALL_WORD];
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        prio[i] = INFINITY;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const TokPair *p = sym[i] >= 0 && sym[i + 1] >= 0 ? pair_get(&t->pairs, sym[i], sym[i + 1]) : NULL;
        if (p) {
            prio[i] = p->prio;
            to[i] = p->id;
        }
    }
    for (;;) {
        int32_t best = -1;
        float bp = INFINITY;
        for (int32_t i = 0; i >= 0; i = next[i])
            if (prio[i] < bp) {
                bp = prio[i];
                best = i;
            }
        if (best < 0)
            return;
        int32_t r = next[best];
        sym[best] = to[best];
        sym[r] = TOK_DEAD;
        next[best] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = best;
        int32_t around[2] = { prev[best], best };
        for (int k = 0; k < 2; k++) {
            int32_t a = around[k];
            if (a < 0)
                continue;
            int32_t b = next[a];
            const TokPair *p = b >= 0 && sym[a] >= 0 && sym[b] >= 0 ? pair_get(&t->pairs, sym[a], sym[b]) : NULL;
            prio[a] = p ? p->prio : INFINITY;
            if (p)
                to[a] = p->id;
        }
    }
}

/* Merges t->sym[0..n) in place; live symbols are linked by sym_next from 0. */
static int merge_symbols(Tokenizer *t, size_t n)
{
    if (n <= TOK_SMALL_WORD) {
        merge_small(t, n);
        return 0;
    }
    int32_t *sym = t->sym, *prev = t->sym_prev, *next = t->sym_next;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    int rc;
    for (size_t i = 0; i + 1 < n; i++)
        if ((rc = try_pair(t, &hn, (int32_t)i, (int32_t)i + 1)))
            return rc;
    while (hn) {
        HeapItem it = heap_pop(t, &hn);
        int32_t r = next[it.pos];
        if (sym[it.pos] != it.l || r < 0 || sym[r] != it.r)
            continue;
        sym[it.pos] = it.id;
        sym[r] = TOK_DEAD;
        next[it.pos] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = it.pos;
        if (prev[it.pos] >= 0 && (rc = try_pair(t, &hn, prev[it.pos], it.pos)))
            return rc;
        if (next[it.pos] >= 0 && (rc = try_pair(t, &hn, it.pos, next[it.pos])))
            return rc;
    }
    return 0;
}

static int sym_reserve(Tokenizer *t, size_t n)
{
    if (n <= t->cap_sym)
        return 0;
    size_t c = t->cap_sym, c2 = t->cap_sym, c3 = t->cap_sym;
    if (grow((void **)&t->sym, &c, n, sizeof(int32_t)) || grow((void **)&t->sym_prev, &c2, n, sizeof(int32_t)) ||
        grow((void **)&t->sym_next, &c3, n, sizeof(int32_t)))
        return ERR_NOMEM;
    t->cap_sym = c < c2 ? (c < c3 ? c : c3) : (c2 < c3 ? c2 : c3);
    return 0;
}

/* Ids of one pre-tokenized piece, appended to out. */
static int encode_word(Tokenizer *t, const char *w, size_t n, TokIds *out)
{
    if (n == 0)
        return 0;
    uint64_t h = 0;
    bool cacheable = n <= TOK_CACHE_MAX_WORD;
    if (cacheable) {
        h = hash_bytes(w, n);
        const TokCacheEntry *e = cache_get(&t->cache, w, n, h);
        if (e)
            return ids_append(out, t->cache.ids + e->ids_off, e->ids_n);
    }
    size_t out0 = out->n;
    int rc;

    if (t->ignore_merges) {
        int32_t id;
        if (t->byte_level) {
            if (grow((void **)&t->seg, &t->seg_cap, 2 * n, 1))
                return ERR_NOMEM;
            size_t m = 0;
            for (size_t i = 0; i < n; i++)
                m += (size_t)utf8_encode(tok_byte_to_cp((uint8_t)w[i]), t->seg + m);
            id = vocab_get(t, t->seg, m);
        } else
            id = vocab_get(t, w, n);
        if (id >= 0) {
            if ((rc = ids_push(out, id)))
                return rc;
            goto done;
        }
    }

    if ((rc = sym_reserve(t, n)))
        return rc;
    size_t ns = 0;
    if (t->byte_level) {
        for (size_t i = 0; i < n; i++)
            t->sym[ns++] = t->byte_sym[(uint8_t)w[i]];
    } else {
        bool prev_unk = false;
        for (size_t i = 0; i < n;) {
            int l = utf8_len((const uint8_t *)w + i, n - i);
            int32_t id = vocab_get(t, w + i, (size_t)l);
            if (id >= 0) {
                t->sym[ns++] = id;
                prev_unk = false;
            } else {
                bool bytes_ok = t->byte_fallback || t->model == TOK_MODEL_SPM;
                for (int k = 0; k < l && bytes_ok; k++)
                    bytes_ok = t->byte_sym[(uint8_t)w[i + k]] >= 0;
                if (bytes_ok) {
                    for (int k = 0; k < l; k++)
                        t->sym[ns++] = t->byte_sym[(uint8_t)w[i + k]];
                    prev_unk = false;
                } else if (t->unk >= 0) {
                    if (!(t->fuse_unk && prev_unk))
                        t->sym[ns++] = t->unk;
                    prev_unk = true;
                }
                /* else: no way to represent it (llama.cpp drops it too) */
            }
            i += (size_t)l;
        }
    }
    if ((rc = merge_symbols(t, ns)))
        return rc;
    if (ns) {
        for (int32_t i = 0; i >= 0; i = t->sym_next[i])
            if (t->sym[i] >= 0 && (rc = ids_push(out, t->sym[i])))
                return rc;
    }
done:
    if (cacheable)
        cache_put(&t->cache, w, n, h, out->ids + out0, out->n - out0);
    return 0;
}

/* ---- encoding: normalizer and pre-tokenizer -------------------------------- */

static int arena_reserve(Tokenizer *t, size_t extra)
{
    return grow((void **)&t->arena, &t->arena_cap, t->arena_len + extra, 1);
}

static int pieces_push(TokPiece **v, size_t *n, size_t *cap, TokPiece p)
{
    if (p.len == 0)
        return 0;
    if (*n == *cap && grow((void **)v, cap, *n + 1, sizeof **v))
        return ERR_NOMEM;
    (*v)[(*n)++] = p;
    return 0;
}

/* Applies the normalizer steps to text; the result is appended to the arena
 * and its offset/length returned. */
static int normalize(Tokenizer *t, const char *text, size_t len, size_t *off, size_t *outlen)
{
    if (arena_reserve(t, len))
        return ERR_NOMEM;
    size_t cur = t->arena_len;
    memcpy(t->arena + cur, text, len);
    t->arena_len += len;
    size_t cl = len;
    for (int k = 0; k < t->n_norm; k++) {
        const TokNormStep *st = &t->norm[k];
        if (st->kind == TOK_NORM_NFC) {
            if (tok_nfc_stable(t->arena + cur, cl))
                continue;
            char *nfc;
            size_t nl;
            if (tok_nfc(t->arena + cur, cl, &nfc, &nl))
                return ERR_NOMEM;
            if (arena_reserve(t, nl)) {
                free(nfc);
                return ERR_NOMEM;
            }
            cur = t->arena_len;
            memcpy(t->arena + cur, nfc, nl);
            t->arena_len += nl;
            cl = nl;
            free(nfc);
            continue;
        }
        if (st->kind == TOK_NORM_PREPEND) {
            if (cl == 0)
                continue;
            if (arena_reserve(t, st->alen + cl))
                return ERR_NOMEM;
            size_t no = t->arena_len;
            memcpy(t->arena + no, st->a, st->alen);
            memcpy(t->arena + no + st->alen, t->arena + cur, cl);
            t->arena_len += st->alen + cl;
            cur = no;
            cl += st->alen;
            continue;
        }
        /* REPLACE: count first, to reserve once */
        size_t count = 0;
        for (size_t i = 0; i + st->alen <= cl;) {
            if (memcmp(t->arena + cur + i, st->a, st->alen) == 0) {
                count++;
                i += st->alen;
            } else
                i++;
        }
        if (!count)
            continue;
        size_t nl = cl - count * st->alen + count * st->blen;
        if (arena_reserve(t, nl))
            return ERR_NOMEM;
        size_t no = t->arena_len, m = 0;
        const char *src = t->arena + cur;
        char *dst = t->arena + no;
        for (size_t i = 0; i < cl;) {
            if (i + st->alen <= cl && memcmp(src + i, st->a, st->alen) == 0) {
                memcpy(dst + m, st->b, st->blen);
                m += st->blen;
                i += st->alen;
            } else
                dst[m++] = src[i++];
        }
        t->arena_len += m;
        cur = no;
        cl = m;
    }
    *off = cur;
    *outlen = cl;
    return 0;
}

typedef struct {
    size_t s, e;
    bool match;
} Span;

/* Splits one piece by a regex into spans (HF's find_matches), then groups
 * them by the behavior. */
static int split_piece(Tokenizer *t, const TokPreStep *st, TokPiece p, TokPiece **out, size_t *nout, size_t *capout)
{
    const PCRE2_SPTR subj = (PCRE2_SPTR)(t->arena + p.off);
    size_t n = p.len;
    Span spans_local[64];
    Span *spans = spans_local;
    size_t ns = 0, cap = 64;
    int rc = 0;
#define SPAN_PUSH(S, E, M)                                                                 \
    do {                                                                                   \
        if (ns == cap) {                                                                   \
            size_t nc = cap * 2;                                                           \
            Span *q = spans == spans_local ? malloc(nc * sizeof *q) : realloc(spans, nc * sizeof *q); \
            if (!q) {                                                                      \
                rc = ERR_NOMEM;                                                        \
                goto out;                                                                  \
            }                                                                              \
            if (spans == spans_local)                                                      \
                memcpy(q, spans_local, sizeof spans_local);                                \
            spans = q;                                                                     \
            cap = nc;                                                                      \
        }                                                                                  \
        spans[ns++] = (Span){ (S), (E), (M) };                                             \
    } while (0)

    size_t prev = 0, start = 0;
    while (start <= n) {
        int m = st->jit ? pcre2_jit_match(st->re, subj, n, start, 0, t->md, NULL)
                        : pcre2_match(st->re, subj, n, start, 0, t->md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            break;
        if (m < 0) {
            PCRE2_UCHAR msg[120];
            pcre2_get_error_message(m, msg, sizeof msg);
            snprintf(t->errmsg, sizeof t->errmsg, "pre-tokenizer regex: %s", (const char *)msg);
            rc = ERR_REGEX;
            goto out;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > prev)
            SPAN_PUSH(prev, ms, false);
        SPAN_PUSH(ms, me, true);
        prev = me;
        if (me > ms)
            start = me;
        else {
            if (me >= n)
                break;
            start = me + (size_t)utf8_len(subj + me, n - me);
        }
    }
    if (prev < n)
        SPAN_PUSH(prev, n, false);

    if (st->invert)
        for (size_t i = 0; i < ns; i++)
            spans[i].match = !spans[i].match;

    /* group: written as pieces relative to p */
    switch (st->behavior) {
    case TOK_SPLIT_ISOLATED:
        for (size_t i = 0; i < ns; i++)
            if ((rc = pieces_push(out, nout, capout,
                                  (TokPiece){ p.off + spans[i].s, spans[i].e - spans[i].s, p.first && spans[i].s == 0 })))
                goto out;
        break;
    case TOK_SPLIT_REMOVED:
        for (size_t i = 0; i < ns; i++)
            if (!spans[i].match &&
                (rc = pieces_push(out, nout, capout,
                                  (TokPiece){ p.off + spans[i].s, spans[i].e - spans[i].s, p.first && spans[i].s == 0 })))
                goto out;
        break;
    case TOK_SPLIT_MERGED_PREV:
    case TOK_SPLIT_CONTIGUOUS: {
        /* forward fold over spans into [s,e) groups (empty ones dropped later) */
        size_t gs = 0, ge = 0;
        bool have = false, prev_match = false;
        for (size_t i = 0; i < ns; i++) {
            bool join = st->behavior == TOK_SPLIT_MERGED_PREV ? (spans[i].match && !prev_match)
                                                               : (spans[i].match == prev_match);
            if (join && have)
                ge = spans[i].e;
            else {
                if (have &&
                    (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
                    goto out;
                gs = spans[i].s;
                ge = spans[i].e;
                have = true;
            }
            prev_match = spans[i].match;
        }
        if (have && (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
            goto out;
        break;
    }
    case TOK_SPLIT_MERGED_NEXT: {
        /* backward fold: a match joins the group to its right unless that
         * group started with a match */
        size_t base = *nout;
        size_t gs = 0, ge = 0;
        bool have = false, prev_match = false;
        for (size_t k = ns; k-- > 0;) {
            bool join = spans[k].match && !prev_match;
            if (join && have)
                gs = spans[k].s;
            else {
                if (have &&
                    (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
                    goto out;
                gs = spans[k].s;
                ge = spans[k].e;
                have = true;
            }
            prev_match = spans[k].match;
        }
        if (have && (rc = pieces_push(out, nout, capout, (TokPiece){ p.off + gs, ge - gs, p.first && gs == 0 })))
            goto out;
        /* reverse what was pushed */
        for (size_t a = base, b = *nout; a + 1 < b; a++, b--) {
            TokPiece tmp = (*out)[a];
            (*out)[a] = (*out)[b - 1];
            (*out)[b - 1] = tmp;
        }
        break;
    }
    }
out:
    if (spans != spans_local)
        free(spans);
    return rc;
#undef SPAN_PUSH
}

static int metaspace_piece(Tokenizer *t, const TokPreStep *st, TokPiece p, TokPiece **out, size_t *nout,
                           size_t *capout)
{
    /* replace spaces, then maybe prepend (HF: after the replacement, so a
     * leading space counts as the prefix) */
    size_t spaces = 0;
    for (size_t i = 0; i < p.len; i++)
        spaces += t->arena[p.off + i] == ' ';
    size_t nl = p.len + spaces * (st->repl_len - 1) + st->repl_len;
    if (arena_reserve(t, nl))
        return ERR_NOMEM;
    size_t no = t->arena_len, m = 0;
    char *dst = t->arena + no;
    const char *src = t->arena + p.off;
    bool starts = p.len > 0 && (src[0] == ' ' || (p.len >= st->repl_len && memcmp(src, st->repl, st->repl_len) == 0));
    bool prepend = !starts && (st->scheme == TOK_PREPEND_ALWAYS || (st->scheme == TOK_PREPEND_FIRST && p.first));
    if (prepend) {
        memcpy(dst, st->repl, st->repl_len);
        m += st->repl_len;
    }
    for (size_t i = 0; i < p.len; i++) {
        if (src[i] == ' ') {
            memcpy(dst + m, st->repl, st->repl_len);
            m += st->repl_len;
        } else
            dst[m++] = src[i];
    }
    t->arena_len += m;
    if (!st->split)
        return pieces_push(out, nout, capout, (TokPiece){ no, m, p.first });
    /* split before every replacement char (MergedWithNext) */
    size_t gs = 0;
    for (size_t i = 0; i < m;) {
        if (i + st->repl_len <= m && memcmp(dst + i, st->repl, st->repl_len) == 0) {
            if (i > gs) {
                int rc = pieces_push(out, nout, capout, (TokPiece){ no + gs, i - gs, p.first && gs == 0 });
                if (rc)
                    return rc;
            }
            gs = i;
            i += st->repl_len;
        } else
            i++;
    }
    return pieces_push(out, nout, capout, (TokPiece){ no + gs, m - gs, p.first && gs == 0 });
}

static int encode_segment(Tokenizer *t, const char *text, size_t len, bool first, TokIds *out)
{
    if (len == 0)
        return 0;
    int rc;
    t->arena_len = 0;
    size_t off, nl;
    if ((rc = normalize(t, text, len, &off, &nl)))
        return rc;
    t->n_pieces = 0;
    if ((rc = pieces_push(&t->pieces, &t->n_pieces, &t->cap_pieces, (TokPiece){ off, nl, first })))
        return rc;
    for (int k = 0; k < t->n_pre; k++) {
        const TokPreStep *st = &t->pre[k];
        size_t n2 = 0;
        for (size_t i = 0; i < t->n_pieces; i++) {
            TokPiece p = t->pieces[i];
            if (st->kind == TOK_PRE_SPLIT)
                rc = split_piece(t, st, p, &t->pieces2, &n2, &t->cap_pieces2);
            else if (st->kind == TOK_PRE_METASPACE)
                rc = metaspace_piece(t, st, p, &t->pieces2, &n2, &t->cap_pieces2);
            else { /* PREFIX_SPACE */
                if (t->arena[p.off] != ' ') {
                    if (arena_reserve(t, p.len + 1))
                        return ERR_NOMEM;
                    size_t no = t->arena_len;
                    t->arena[no] = ' ';
                    memcpy(t->arena + no + 1, t->arena + p.off, p.len);
                    t->arena_len += p.len + 1;
                    p.off = no;
                    p.len++;
                }
                rc = pieces_push(&t->pieces2, &n2, &t->cap_pieces2, p);
            }
            if (rc)
                return rc;
        }
        TokPiece *tmp = t->pieces;
        t->pieces = t->pieces2;
        t->pieces2 = tmp;
        size_t tc = t->cap_pieces;
        t->cap_pieces = t->cap_pieces2;
        t->cap_pieces2 = tc;
        t->n_pieces = n2;
    }
    for (size_t i = 0; i < t->n_pieces; i++) {
        const char *w = t->arena + t->pieces[i].off;
        size_t n = t->pieces[i].len, start = 0;
        if (t->meta_split) /* cut before a "▁" that follows another character */
            for (size_t k = 1; k + 3 <= n; k++)
                if (w[k] == '\xE2' && w[k + 1] == '\x96' && w[k + 2] == '\x81' &&
                    !(k >= 3 && w[k - 3] == '\xE2' && w[k - 2] == '\x96' && w[k - 1] == '\x81')) {
                    if ((rc = encode_word(t, w + start, k - start, out)))
                        return rc;
                    start = k;
                }
        if ((rc = encode_word(t, w + start, n - start, out)))
            return rc;
    }
    return 0;
}

/* Longest allowed added token starting at text[i], or -1; *end set. */
static int match_added(const Tokenizer *t, const char *text, size_t len, size_t i, bool parse_special, size_t *end)
{
    int best = -1;
    int cur = 0;
    for (size_t j = i; j < len; j++) {
        int c = t->trie[cur].first_child;
        while (c >= 0 && t->trie[c].byte != (uint8_t)text[j])
            c = t->trie[c].next_sibling;
        if (c < 0)
            break;
        cur = c;
        int k = t->trie[cur].added;
        if (k < 0)
            continue;
        const TokAdded *a = &t->added[k];
        if (a->special && !parse_special)
            continue;
        if (a->single_word && ((i > 0 && is_word_byte((uint8_t)text[i - 1])) ||
                               (j + 1 < len && is_word_byte((uint8_t)text[j + 1]))))
            continue;
        best = k;
        *end = j + 1;
    }
    return best;
}

int tok_encode(Tokenizer *t, const char *text, size_t len, unsigned flags, TokIds *out)
{
    if (!t || (!text && len) || !out)
        return ERR_ARG;
    size_t n0 = out->n;
    int rc = 0;
    pthread_mutex_lock(&t->mu);
    t->errmsg[0] = 0;
    bool parse_special = flags & TOK_ENC_PARSE_SPECIAL;
    if ((flags & TOK_ENC_ADD_SPECIAL) && t->add_bos && (rc = ids_push(out, t->bos)))
        goto fail;
    size_t seg = 0;
    if (t->n_added) {
        for (size_t i = 0; i < len; i++) {
            uint8_t c = (uint8_t)text[i];
            if (!(t->added_first[c >> 3] & (1u << (c & 7))))
                continue;
            size_t end = 0;
            int k = match_added(t, text, len, i, parse_special, &end);
            if (k < 0)
                continue;
            const TokAdded *a = &t->added[k];
            size_t le = i;
            if (a->lstrip)
                while (le > seg && is_space_byte((uint8_t)text[le - 1]))
                    le--;
            if ((rc = encode_segment(t, text + seg, le - seg, seg == 0, out)))
                goto fail;
            if ((rc = ids_push(out, a->id)))
                goto fail;
            seg = end;
            if (a->rstrip)
                while (seg < len && is_space_byte((uint8_t)text[seg]))
                    seg++;
            i = seg - 1;
        }
    }
    if ((rc = encode_segment(t, text + seg, len - seg, seg == 0, out)))
        goto fail;
    if ((flags & TOK_ENC_ADD_SPECIAL) && t->add_eos && (rc = ids_push(out, t->eos)))
        goto fail;
    pthread_mutex_unlock(&t->mu);
    return 0;
fail:
    if (!t->errmsg[0])
        snprintf(t->errmsg, sizeof t->errmsg, "%s", err_str(rc));
    out->n = n0;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

const char *tok_last_error(const Tokenizer *t)
{
    return t && t->errmsg[0] ? t->errmsg : "no error";
}

/* ---- decoding and accessors ----------------------------------------------- */

const char *tok_token_piece(const Tokenizer *t, int32_t id, size_t *len)
{
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->piece_len[id];
    return t->piece_pool + t->piece_off[id];
}

const char *tok_token_text(const Tokenizer *t, int32_t id, size_t *len)
{
    if (!t || id < 0 || id >= t->n_vocab) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->text_len[id];
    return ttext(t, id);
}

unsigned tok_token_attr(const Tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab ? t->attr[id] : 0;
}

float tok_token_score(const Tokenizer *t, int32_t id)
{
    return t && id >= 0 && id < t->n_vocab ? t->score[id] : 0.0f;
}

bool tok_is_special(const Tokenizer *t, int32_t id)
{
    return tok_token_attr(t, id) & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN);
}

int tok_decode(const Tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out, size_t *out_len)
{
    if (!t || (!ids && n) || !out)
        return ERR_ARG;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return ERR_ARG;
        total += t->piece_len[ids[i]];
    }
    char *buf = malloc(total + 1);
    if (!buf)
        return ERR_NOMEM;
    size_t m = 0;
    bool strip = flags & TOK_DEC_STRIP_LEADING_SPACE;
    for (size_t i = 0; i < n; i++) {
        if ((flags & TOK_DEC_SKIP_SPECIAL) && tok_is_special(t, ids[i]))
            continue;
        const char *p = t->piece_pool + t->piece_off[ids[i]];
        size_t l = t->piece_len[ids[i]];
        if (strip && l) {
            if (p[0] == ' ') {
                p++;
                l--;
            }
            strip = false;
        }
        memcpy(buf + m, p, l);
        m += l;
    }
    buf[m] = 0;
    *out = buf;
    if (out_len)
        *out_len = m;
    return 0;
}

bool tok_decode_strips_space(const Tokenizer *t) { return t && t->strip_space_decode; }
int32_t tok_vocab_size(const Tokenizer *t) { return t ? t->n_vocab : 0; }
int32_t tok_bos(const Tokenizer *t) { return t ? t->bos : -1; }
int32_t tok_eos(const Tokenizer *t) { return t ? t->eos : -1; }
int32_t tok_eot(const Tokenizer *t) { return t ? t->eot : -1; }
int32_t tok_unk(const Tokenizer *t) { return t ? t->unk : -1; }
int32_t tok_pad(const Tokenizer *t) { return t ? t->pad : -1; }
bool tok_add_bos(const Tokenizer *t) { return t && t->add_bos; }
bool tok_add_eos(const Tokenizer *t) { return t && t->add_eos; }
const char *tok_chat_template(const Tokenizer *t) { return t ? t->chat_template : NULL; }
const char *tok_model_kind(const Tokenizer *t) { return t ? t->kind_name : ""; }

bool tok_is_eog(const Tokenizer *t, int32_t id)
{
    if (!t)
        return false;
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return true;
    return false;
}

const int32_t *tok_eog_ids(const Tokenizer *t, int *n)
{
    *n = t ? t->n_eog : 0;
    return t ? t->eog : NULL;
}

int32_t tok_find(const Tokenizer *t, const char *text, size_t len)
{
    return t && text ? vocab_get(t, text, len) : -1;
}
