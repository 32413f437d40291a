/*
 * runtime/tokenizer.c — the tokenizer's tables: building them and reading
 * them.
 *
 * Owns: the builder functions loaders call (tok_internal.h), tok_finish
 * (the derived tables: vocabulary hash map, merge pair map, byte symbols,
 * decode pieces, added-token trie, end-of-generation ids, with their
 * consistency checks), tok_free, decoding and the accessors. Loaders live
 * in tok_load.c; encoding in tok_pretok.c (text -> pieces) and tok_bpe.c
 * (piece -> ids).
 */
#include "base/err.h"
#include "runtime/tok_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers -------------------------------------------------------- */

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

/* ---- vocabulary map ------------------------------------------------------- */

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
