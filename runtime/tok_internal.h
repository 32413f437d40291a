/*
 * runtime/tok_internal.h — the Tokenizer's insides, shared by the files of
 * the tokenizer module only:
 *
 *   tokenizer.c    the tables and building them (tok_finish), freeing,
 *                  decoding and the accessors
 *   tok_bpe.c      the BPE merge of one piece, with the word cache
 *   tok_pretok.c   tok_encode: added tokens, the normalizer and the
 *                  pre-tokenizer, each piece handed to tok_bpe.c
 *   tok_load.c     the GGUF and Hugging Face loaders
 *
 * Nothing outside runtime/tok*.c includes this; tok_nfc.c (Unicode NFC,
 * below the tokenizer) does not either: it has its own header,
 * runtime/tok_nfc.h.
 *
 * A loader allocates a Tokenizer with tok_alloc, fills the vocabulary
 * (tok_set_vocab + tok_set_token), merges (tok_add_merge), the
 * normalizer/pre-tokenizer steps, added tokens and the special ids, then
 * calls tok_finish, which builds every derived table (hash maps, pair map,
 * byte symbols, decode pieces, added-token trie) and checks consistency.
 */
#ifndef SGL_RUNTIME_TOK_INTERNAL_H
#define SGL_RUNTIME_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/utf8.h"
#include "runtime/tokenizer.h"

typedef enum {
    TOK_MODEL_BPE,      /* merges by rank (HF BPE, llama.cpp "gpt2") */
    TOK_MODEL_SPM,      /* pairs ranked by merged token's score (llama.cpp "llama") */
} TokModel;

typedef enum {
    TOK_NORM_PREPEND,   /* a = text prepended to a non-empty segment */
    TOK_NORM_REPLACE,   /* every a -> b (literal) */
    TOK_NORM_NFC,       /* Unicode NFC (runtime/tok_nfc.h) */
} TokNormKind;

typedef struct {
    TokNormKind kind;
    char *a, *b;
    size_t alen, blen;
} TokNormStep;

/* HF SplitDelimiterBehavior. */
typedef enum {
    TOK_SPLIT_REMOVED,
    TOK_SPLIT_ISOLATED,
    TOK_SPLIT_MERGED_PREV,
    TOK_SPLIT_MERGED_NEXT,
    TOK_SPLIT_CONTIGUOUS,
} TokSplitBehavior;

typedef enum {
    TOK_PRE_SPLIT,          /* regex (or literal) split of every piece */
    TOK_PRE_PREFIX_SPACE,   /* ByteLevel add_prefix_space: " " before a piece not starting with one */
    TOK_PRE_METASPACE,      /* spaces -> repl, prepend repl (scheme), split before repl */
} TokPreKind;

typedef enum { TOK_PREPEND_ALWAYS, TOK_PREPEND_FIRST, TOK_PREPEND_NEVER } TokPrependScheme;

typedef struct {
    TokPreKind kind;
    pcre2_code *re;             /* SPLIT */
    bool jit;                   /* re is JIT-compiled: match with pcre2_jit_match */
    TokSplitBehavior behavior;  /* SPLIT */
    bool invert;                /* SPLIT */
    char *repl;                 /* METASPACE replacement character (UTF-8) */
    size_t repl_len;
    TokPrependScheme scheme;    /* METASPACE */
    bool split;                 /* METASPACE */
} TokPreStep;

/* An added token: matched in raw text before normalization. */
typedef struct {
    int32_t id;
    bool special;               /* needs TOK_ENC_PARSE_SPECIAL */
    bool lstrip, rstrip, single_word;
} TokAdded;

/* Byte trie over added-token texts; children are a sibling list. */
typedef struct {
    int32_t first_child, next_sibling;
    int32_t added;              /* index into added[], or -1 */
    uint8_t byte;
} TokTrieNode;

/* Open-addressing map: bytes -> int32 (vocabulary text -> id). Keys live in
 * the Tokenizer's text pool. */
typedef struct {
    uint32_t mask;
    int32_t *slots;             /* token id, -1 empty */
    uint32_t *hashes;
} TokStrMap;

/* Pair map: (left id, right id) -> (priority, merged id). Lower priority
 * merges first: BPE rank, or minus the merged token's score for SPM. */
typedef struct {
    uint64_t key;               /* left << 32 | right; UINT64_MAX empty */
    float prio;
    int32_t id;
} TokPair;

typedef struct {
    uint32_t mask;
    TokPair *slots;
    size_t n;
} TokPairMap;

/* Word cache: word bytes -> ids; cleared wholesale when full. */
typedef struct {
    uint64_t hash;
    uint32_t key_off, key_len;
    uint32_t ids_off, ids_n;
} TokCacheEntry;

typedef struct {
    uint32_t mask;
    TokCacheEntry *slots;       /* key_len == UINT32_MAX: empty */
    size_t n;
    char *keys;
    size_t keys_len, keys_cap;
    int32_t *ids;
    size_t ids_len, ids_cap;
} TokCache;

typedef struct { size_t off, len; bool first; } TokPiece;

struct Tokenizer {
    TokModel model;
    bool byte_level;            /* GPT-2 byte<->unicode symbols */
    bool byte_fallback;         /* unknown characters -> <0xXX> tokens */
    bool ignore_merges;         /* a piece that is itself a token is emitted whole */
    bool fuse_unk;
    bool meta_split;            /* no token has "▁" after another character: pieces
                                   can be cut before such a "▁" without changing
                                   the result (SentencePiece vocabularies) */
    bool metaspace_decode;      /* decode "▁" as a space */
    bool strip_space_decode;    /* tok_decode_strips_space */
    char kind_name[16];

    int32_t n_vocab;
    char *text_pool;            /* vocabulary strings, NUL-separated */
    size_t text_pool_len, text_pool_cap;
    uint32_t *text_off, *text_len;
    float *score;
    uint8_t *attr;

    char *piece_pool;           /* decoded bytes per token */
    uint32_t *piece_off, *piece_len;

    TokStrMap vocab;
    TokPairMap pairs;
    int32_t byte_sym[256];      /* byte-level: symbol id of each byte; else <0xXX> id; -1 none */

    /* merges as given by the loader (strings), resolved by tok_finish */
    char **merge_l, **merge_r;
    size_t n_merges, cap_merges;

    TokNormStep *norm;
    int n_norm;
    TokPreStep *pre;
    int n_pre;

    TokAdded *added;
    int n_added;
    TokTrieNode *trie;
    int n_trie, cap_trie;
    uint8_t added_first[32];    /* bitset of first bytes of added tokens */

    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos;
    int32_t *eog;
    int n_eog;
    char *chat_template;

    /* encode state, under mu */
    pthread_mutex_t mu;
    bool mu_init;
    pcre2_match_data *md;
    TokCache cache;
    char *seg;                  /* scratch: a piece's byte-level text (ignore_merges) */
    size_t seg_cap;
    char *arena;                /* piece bytes */
    size_t arena_len, arena_cap;
    TokPiece *pieces, *pieces2;
    size_t n_pieces, cap_pieces, cap_pieces2;
    int32_t *sym, *sym_prev, *sym_next;
    size_t cap_sym;
    void *heap;
    size_t cap_heap;
    char errmsg[160];
};

Tokenizer *tok_alloc(void);
int tok_set_vocab(Tokenizer *t, int32_t n);
/* Copies text. attr: TOK_ATTR_*. */
int tok_set_token(Tokenizer *t, int32_t id, const char *text, size_t len, float score, unsigned attr);
int tok_add_merge(Tokenizer *t, const char *l, size_t llen, const char *r, size_t rlen);
int tok_add_norm(Tokenizer *t, TokNormKind kind, const char *a, size_t alen, const char *b, size_t blen);
/* pattern is a regex unless literal; compiles with UTF|UCP. Message in err. */
int tok_add_split(Tokenizer *t, const char *pattern, size_t len, bool literal,
                  TokSplitBehavior behavior, bool invert, char *err, size_t errcap);
int tok_add_prefix_space(Tokenizer *t);
int tok_add_metaspace(Tokenizer *t, const char *repl, size_t repl_len, TokPrependScheme scheme, bool split);
int tok_add_added(Tokenizer *t, int32_t id, bool special, bool lstrip, bool rstrip, bool single_word);
int tok_set_template(Tokenizer *t, const char *s, size_t len);
/* Derives everything; message in err. */
int tok_finish(Tokenizer *t, char *err, size_t errcap);

/* Whether llama.cpp forces a token with this text to be a control token
 * (end-of-turn/generation and fill-in-the-middle names). */
bool tok_llama_control_name(const char *s, size_t n);

/* Code point of the GPT-2 byte-level character for byte b. */
uint32_t tok_byte_to_cp(uint8_t b);
/* Byte for a GPT-2 byte-level code point, or -1. */
int tok_cp_to_byte(uint32_t cp);

/* ---- shared by tokenizer.c, tok_bpe.c and tok_pretok.c ----------------------
 * Small helpers and the table lookups the merge loop calls per pair: inline
 * here, as they were static in one file before the split. */

static inline uint64_t hash_bytes(const void *p, size_t n)
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

static inline int grow(void **p, size_t *cap, size_t need, size_t elem)
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
static inline int utf8_len(const uint8_t *s, size_t n)
{
    uint32_t cp;
    int len = utf8_decode((const char *)s, n, &cp);
    return len ? len : 1;
}

static inline int ids_push(TokIds *v, int32_t id)
{
    if (v->n == v->cap && grow((void **)&v->ids, &v->cap, v->n + 1, sizeof *v->ids))
        return ERR_NOMEM;
    v->ids[v->n++] = id;
    return 0;
}

/* The vocabulary map and the pair map (built by tok_finish in tokenizer.c). */

static inline const char *ttext(const Tokenizer *t, int32_t id) { return t->text_pool + t->text_off[id]; }

static inline int32_t vocab_get(const Tokenizer *t, const char *s, size_t n)
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

static inline uint32_t pair_hash(uint64_t key)
{
    key ^= key >> 31; /* splitmix64's finalizer: every key bit reaches the low bits */
    key *= 0x7fb5d329728ea185ull;
    key ^= key >> 27;
    key *= 0x81dadef4bc2dd44dull;
    key ^= key >> 33;
    return (uint32_t)key;
}

static inline const TokPair *pair_get(const TokPairMap *m, int32_t l, int32_t r)
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

/* tok_bpe.c: ids of one pre-tokenized piece (word cache, then symbols and
 * merges), appended to out. 0 or ERR_NOMEM. Called with t->mu held. */
int tok_encode_word(Tokenizer *t, const char *w, size_t n, TokIds *out);

#endif
