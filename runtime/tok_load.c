/*
 * runtime/tok_load.c — building a Tokenizer from GGUF metadata or from a
 * Hugging Face tokenizer.json (+ tokenizer_config.json).
 *
 * Owns: the mapping from each format's configuration to the tokenizer's
 * steps (tok_internal.h). GGUF follows llama.cpp (llama-vocab.cpp): the
 * pre-tokenizer is chosen by the name in tokenizer.ggml.pre. tokenizer.json
 * follows Hugging Face `tokenizers`: the normalizer, pre_tokenizer, model,
 * decoder and post_processor objects are read as written. Anything this file
 * does not know fails the load with a message naming it.
 */
#include "runtime/tok_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- pre-tokenizer regexes ------------------------------------------------ */

/* The split patterns as llama.cpp spells them (llama3/qwen2 with explicit
 * case classes instead of (?i:...), which would also match U+017F and
 * U+212A under Unicode case folding). */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3 RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_QWEN2 RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *names;          /* '|'-separated tokenizer.ggml.pre values */
    const char *re[4];          /* applied in order, each isolating its matches */
    bool ignore_merges;
    bool add_bos;               /* default when tokenizer.ggml.add_bos_token is absent */
} PreDef;

static const PreDef pre_defs[] = {
    { "default", { "[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]" }, false },
    { "llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|midm-2.0|lfm2", { RE_LLAMA3 }, true, true },
    { "dbrx|smaug-bpe", { RE_LLAMA3 }, false },
    { "qwen2|deepseek-r1-qwen|stablelm2|hunyuan", { RE_QWEN2 }, false },
    { "gpt-2|gpt2|phi-2|jina-es|jina-de|jina-v2-es|jina-v2-de|mpt|olmo|jais|exaone4|a.x-4.0|mellum|modern-bert",
      { RE_GPT2 }, false },
    { "smollm|starcoder|refact|command-r|codeshell|exaone|minerva", { "\\p{N}", RE_GPT2 }, false },
};

static bool name_in(const char *names, const char *s, size_t n)
{
    for (const char *p = names; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && memcmp(p, s, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

/* ---- GGUF ----------------------------------------------------------------- */

static unsigned attr_of_type(int64_t type)
{
    switch (type) {
    case 2: return TOK_ATTR_UNKNOWN;
    case 3: return TOK_ATTR_CONTROL;
    case 4: return TOK_ATTR_USER_DEFINED;
    case 5: return TOK_ATTR_UNUSED;
    case 6: return TOK_ATTR_BYTE;
    default: return TOK_ATTR_NORMAL;
    }
}

static void gguf_id(const GgufFile *f, const char *key, int32_t *dst)
{
    uint32_t v;
    if (gguf_find(f, key) && gguf_get_u32(f, key, &v, NULL, 0) == 0)
        *dst = (int32_t)v;
}

static void gguf_flag(const GgufFile *f, const char *key, bool *dst)
{
    bool v;
    if (gguf_find(f, key) && gguf_get_bool(f, key, &v, NULL, 0) == 0)
        *dst = v;
}

static int load_gguf(Tokenizer *t, const GgufFile *f, char *err, size_t errcap)
{
    int rc;
    const char *model, *pre = "default";
    size_t model_len, pre_len = 7;
    if (gguf_get_str(f, "tokenizer.ggml.model", &model, &model_len, err, errcap))
        return ERR_FORMAT;
    bool spm;
    if (model_len == 5 && memcmp(model, "llama", 5) == 0)
        spm = true;
    else if (model_len == 4 && memcmp(model, "gpt2", 4) == 0)
        spm = false;
    else {
        err_fmt(err, errcap, "tokenizer.ggml.model \"%.*s\" is not supported (only \"llama\" and \"gpt2\")",
                 (int)model_len, model);
        return ERR_UNSUPPORTED;
    }

    const GgufKV *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->arr_type != GGUF_TYPE_STRING || tokens->arr_n == 0 ||
        tokens->arr_n > INT32_MAX) {
        err_fmt(err, errcap, "tokenizer.ggml.tokens is missing or not a string array");
        return ERR_FORMAT;
    }
    const GgufKV *scores = gguf_find(f, "tokenizer.ggml.scores");
    const GgufKV *types = gguf_find(f, "tokenizer.ggml.token_type");
    if (scores && (scores->type != GGUF_TYPE_ARRAY || scores->arr_n < tokens->arr_n))
        scores = NULL;
    if (types && (types->type != GGUF_TYPE_ARRAY || types->arr_n < tokens->arr_n))
        types = NULL;

    int32_t n = (int32_t)tokens->arr_n;
    if ((rc = tok_set_vocab(t, n)))
        return rc;
    for (int32_t i = 0; i < n; i++) {
        const char *s;
        size_t l;
        double sc = 0;
        int64_t ty = 1;
        if (gguf_arr_str(tokens, (uint64_t)i, &s, &l)) {
            err_fmt(err, errcap, "tokenizer.ggml.tokens[%d] unreadable", i);
            return ERR_FORMAT;
        }
        if (scores && gguf_arr_f64(scores, (uint64_t)i, &sc))
            sc = 0;
        if (types && gguf_arr_i64(types, (uint64_t)i, &ty))
            ty = 1;
        char empty[32];
        if (l == 0) { /* llama.cpp's name for an empty token */
            l = (size_t)snprintf(empty, sizeof empty, "[EMPTY_%d]", i);
            s = empty;
        }
        unsigned attr = attr_of_type(ty);
        /* llama.cpp makes end-of-generation and FIM tokens control tokens,
         * whatever their type says */
        if (!(attr & TOK_ATTR_CONTROL) && tok_llama_control_name(s, l))
            attr |= TOK_ATTR_CONTROL;
        if ((rc = tok_set_token(t, i, s, l, (float)sc, attr)))
            return rc;
        unsigned a = t->attr[i];
        if (a & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            if ((rc = tok_add_added(t, i, !(a & TOK_ATTR_USER_DEFINED), false, false, false)))
                return rc;
    }

    if (spm) {
        t->model = TOK_MODEL_SPM;
        t->byte_level = false;
        t->byte_fallback = true;
        t->metaspace_decode = true;
        snprintf(t->kind_name, sizeof t->kind_name, "spm");
        bool prefix = true;
        gguf_flag(f, "tokenizer.ggml.add_space_prefix", &prefix);
        /* llama.cpp: a space before every text fragment, then spaces -> "▁" */
        if (prefix && (rc = tok_add_norm(t, TOK_NORM_PREPEND, " ", 1, NULL, 0)))
            return rc;
        if ((rc = tok_add_norm(t, TOK_NORM_REPLACE, " ", 1, "\xE2\x96\x81", 3)))
            return rc;
        t->strip_space_decode = prefix;
        t->bos = 1;
        t->eos = 2;
        t->unk = 0;
        t->add_bos = true;
        bool rmws = false;
        gguf_flag(f, "tokenizer.ggml.remove_extra_whitespaces", &rmws);
        if (rmws) {
            err_fmt(err, errcap, "tokenizer.ggml.remove_extra_whitespaces is not supported");
            return ERR_UNSUPPORTED;
        }
    } else {
        t->model = TOK_MODEL_BPE;
        t->byte_level = true;
        snprintf(t->kind_name, sizeof t->kind_name, "bpe");
        const GgufKV *merges = gguf_find(f, "tokenizer.ggml.merges");
        if (!merges || merges->type != GGUF_TYPE_ARRAY || merges->arr_type != GGUF_TYPE_STRING) {
            err_fmt(err, errcap, "tokenizer.ggml.merges is missing or not a string array");
            return ERR_FORMAT;
        }
        for (uint64_t i = 0; i < merges->arr_n; i++) {
            const char *s;
            size_t l;
            if (gguf_arr_str(merges, i, &s, &l)) {
                err_fmt(err, errcap, "tokenizer.ggml.merges[%llu] unreadable", (unsigned long long)i);
                return ERR_FORMAT;
            }
            /* "left right", split at the first space after position 0 */
            const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
            if (!sp)
                continue;
            if ((rc = tok_add_merge(t, s, (size_t)(sp - s), sp + 1, l - (size_t)(sp - s) - 1)))
                return rc;
        }
        const GgufKV *kv = gguf_find(f, "tokenizer.ggml.pre");
        if (kv && gguf_kv_str(kv, &pre, &pre_len)) {
            err_fmt(err, errcap, "tokenizer.ggml.pre is not a string");
            return ERR_FORMAT;
        }
        const PreDef *def = NULL;
        for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
            if (name_in(pre_defs[i].names, pre, pre_len))
                def = &pre_defs[i];
        if (!def) {
            err_fmt(err, errcap, "tokenizer.ggml.pre \"%.*s\" is not supported", (int)pre_len, pre);
            return ERR_UNSUPPORTED;
        }
        for (int i = 0; i < 4 && def->re[i]; i++)
            if ((rc = tok_add_split(t, def->re[i], strlen(def->re[i]), false, TOK_SPLIT_ISOLATED, false, err,
                                    errcap)))
                return rc;
        t->ignore_merges = def->ignore_merges;
        t->add_bos = def->add_bos;
    }

    gguf_id(f, "tokenizer.ggml.bos_token_id", &t->bos);
    gguf_id(f, "tokenizer.ggml.eos_token_id", &t->eos);
    gguf_id(f, "tokenizer.ggml.eot_token_id", &t->eot);
    gguf_id(f, "tokenizer.ggml.eom_token_id", &t->eom);
    gguf_id(f, "tokenizer.ggml.unknown_token_id", &t->unk);
    gguf_id(f, "tokenizer.ggml.padding_token_id", &t->pad);
    gguf_flag(f, "tokenizer.ggml.add_bos_token", &t->add_bos);
    gguf_flag(f, "tokenizer.ggml.add_eos_token", &t->add_eos);

    /* llama.cpp sets per-token attributes by model name; Phi-3's special
     * tokens eat the whitespace after them (except <unk>, <s>, <|endoftext|>) */
    const char *name;
    size_t name_len;
    const GgufKV *nkv = gguf_find(f, "general.name");
    if (nkv && gguf_kv_str(nkv, &name, &name_len) == 0) {
        char low[128];
        size_t n = name_len < sizeof low - 1 ? name_len : sizeof low - 1;
        for (size_t i = 0; i < n; i++)
            low[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
        low[n] = 0;
        if (strstr(low, "phi-3") || strstr(low, "phi3")) {
            for (int k = 0; k < t->n_added; k++) {
                const char *tx = t->text_pool + t->text_off[t->added[k].id];
                t->added[k].rstrip = strcmp(tx, "<unk>") && strcmp(tx, "<s>") && strcmp(tx, "<|endoftext|>");
            }
            int32_t eos_text = -1;
            for (int32_t id = 0; id < t->n_vocab; id++)
                if (t->text_len[id] == 4 && memcmp(t->text_pool + t->text_off[id], "</s>", 4) == 0)
                    eos_text = id;
            if (eos_text >= 0 && (rc = tok_add_added(t, eos_text, !(t->attr[eos_text] & TOK_ATTR_USER_DEFINED),
                                                     false, true, false)))
                return rc;
        }
    }

    const GgufKV *tmpl = gguf_find(f, "tokenizer.chat_template");
    const char *ts;
    size_t tl;
    if (tmpl && gguf_kv_str(tmpl, &ts, &tl) == 0 && (rc = tok_set_template(t, ts, tl)))
        return rc;
    return tok_finish(t, err, errcap);
}

int tok_load_gguf(const GgufFile *f, Tokenizer **out, char *err, size_t errcap)
{
    if (!f || !out)
        return ERR_ARG;
    *out = NULL;
    Tokenizer *t = tok_alloc();
    if (!t)
        return ERR_NOMEM;
    int rc = load_gguf(t, f, err, errcap);
    if (rc) {
        if (rc == ERR_NOMEM)
            err_fmt(err, errcap, "out of memory loading the tokenizer");
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---- Hugging Face tokenizer.json -------------------------------------------- */

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool jbool(const json_t *o, const char *key, bool dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* A token written as a string or as {"content": "..."} (tokenizer_config). */
static const char *jtoken(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_object(v))
        return jstr(v, "content");
    return NULL;
}

/* Split / Replace pattern: {"String": s} or {"Regex": r}. */
static int jpattern(const json_t *o, const char **s, size_t *len, bool *literal)
{
    const json_t *p = json_object_get(o, "pattern");
    const json_t *v;
    if ((v = json_object_get(p, "String")) && json_is_string(v))
        *literal = true;
    else if ((v = json_object_get(p, "Regex")) && json_is_string(v))
        *literal = false;
    else
        return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static int hf_normalizer(Tokenizer *t, const json_t *n, char *err, size_t errcap)
{
    if (!n || json_is_null(n))
        return 0;
    const char *type = jstr(n, "type");
    if (!type) {
        err_fmt(err, errcap, "normalizer without a type");
        return ERR_FORMAT;
    }
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(n, "normalizers");
        size_t i;
        const json_t *v;
        int rc;
        json_array_foreach(list, i, v) if ((rc = hf_normalizer(t, v, err, errcap))) return rc;
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        const json_t *p = json_object_get(n, "prepend");
        if (!json_is_string(p))
            return err_fmt(err, errcap, "Prepend normalizer without a string"), ERR_FORMAT;
        return tok_add_norm(t, TOK_NORM_PREPEND, json_string_value(p), json_string_length(p), NULL, 0);
    }
    if (!strcmp(type, "Replace")) {
        const char *pat;
        size_t pl;
        bool literal;
        const json_t *c = json_object_get(n, "content");
        if (jpattern(n, &pat, &pl, &literal) || !json_is_string(c))
            return err_fmt(err, errcap, "malformed Replace normalizer"), ERR_FORMAT;
        if (!literal || pl == 0) {
            err_fmt(err, errcap, "Replace normalizer with a regex pattern is not supported");
            return ERR_UNSUPPORTED;
        }
        return tok_add_norm(t, TOK_NORM_REPLACE, pat, pl, json_string_value(c), json_string_length(c));
    }
    if (!strcmp(type, "NFC"))
        return tok_add_norm(t, TOK_NORM_NFC, NULL, 0, NULL, 0);
    err_fmt(err, errcap, "normalizer \"%s\" is not supported", type);
    return ERR_UNSUPPORTED;
}

static int split_behavior(const char *s, TokSplitBehavior *b)
{
    static const struct {
        const char *name;
        TokSplitBehavior b;
    } map[] = {
        { "Removed", TOK_SPLIT_REMOVED },
        { "Isolated", TOK_SPLIT_ISOLATED },
        { "MergedWithPrevious", TOK_SPLIT_MERGED_PREV },
        { "MergedWithNext", TOK_SPLIT_MERGED_NEXT },
        { "Contiguous", TOK_SPLIT_CONTIGUOUS },
    };
    for (size_t i = 0; s && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].name)) {
            *b = map[i].b;
            return 0;
        }
    return -1;
}

/* The regex of tokenizers' ByteLevel pre-tokenizer (use_regex). */
#define RE_HF_BYTELEVEL "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static int hf_pretokenizer(Tokenizer *t, const json_t *p, char *err, size_t errcap)
{
    if (!p || json_is_null(p))
        return 0;
    const char *type = jstr(p, "type");
    int rc;
    if (!type) {
        err_fmt(err, errcap, "pre_tokenizer without a type");
        return ERR_FORMAT;
    }
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(p, "pretokenizers");
        size_t i;
        const json_t *v;
        json_array_foreach(list, i, v) if ((rc = hf_pretokenizer(t, v, err, errcap))) return rc;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        t->byte_level = true;
        if (jbool(p, "add_prefix_space", true) && (rc = tok_add_prefix_space(t)))
            return rc;
        if (jbool(p, "use_regex", true))
            return tok_add_split(t, RE_HF_BYTELEVEL, strlen(RE_HF_BYTELEVEL), false, TOK_SPLIT_ISOLATED, false, err,
                                 errcap);
        return 0;
    }
    if (!strcmp(type, "Split")) {
        const char *pat;
        size_t pl;
        bool literal;
        TokSplitBehavior b;
        if (jpattern(p, &pat, &pl, &literal) || split_behavior(jstr(p, "behavior"), &b)) {
            err_fmt(err, errcap, "malformed Split pre-tokenizer");
            return ERR_FORMAT;
        }
        return tok_add_split(t, pat, pl, literal, b, jbool(p, "invert", false), err, errcap);
    }
    if (!strcmp(type, "Digits")) {
        /* tokenizers' Digits splits on char::is_numeric (Nd, Nl, No) */
        if (jbool(p, "individual_digits", false))
            return tok_add_split(t, "\\p{N}", 5, false, TOK_SPLIT_ISOLATED, false, err, errcap);
        return tok_add_split(t, "\\p{N}+", 6, false, TOK_SPLIT_ISOLATED, false, err, errcap);
    }
    if (!strcmp(type, "Metaspace")) {
        const json_t *r = json_object_get(p, "replacement");
        if (!json_is_string(r) || json_string_length(r) == 0) {
            err_fmt(err, errcap, "Metaspace without a replacement");
            return ERR_FORMAT;
        }
        TokPrependScheme scheme = TOK_PREPEND_ALWAYS;
        const char *ps = jstr(p, "prepend_scheme");
        if (ps) {
            if (!strcmp(ps, "first"))
                scheme = TOK_PREPEND_FIRST;
            else if (!strcmp(ps, "never"))
                scheme = TOK_PREPEND_NEVER;
            else if (strcmp(ps, "always")) {
                err_fmt(err, errcap, "Metaspace prepend_scheme \"%s\" unknown", ps);
                return ERR_FORMAT;
            }
        } else if (!jbool(p, "add_prefix_space", true))
            scheme = TOK_PREPEND_NEVER;
        return tok_add_metaspace(t, json_string_value(r), json_string_length(r), scheme, jbool(p, "split", true));
    }
    err_fmt(err, errcap, "pre_tokenizer \"%s\" is not supported", type);
    return ERR_UNSUPPORTED;
}

/* Decoder: only what decoding needs — "▁" as space and the leading-space strip. */
static int hf_decoder(Tokenizer *t, const json_t *d, char *err, size_t errcap)
{
    if (!d || json_is_null(d))
        return 0;
    const char *type = jstr(d, "type");
    if (!type)
        return 0;
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(d, "decoders");
        size_t i;
        const json_t *v;
        int rc;
        json_array_foreach(list, i, v) if ((rc = hf_decoder(t, v, err, errcap))) return rc;
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        const char *pat;
        size_t pl;
        bool literal;
        const char *c = jstr(d, "content");
        if (!jpattern(d, &pat, &pl, &literal) && literal && c && !strcmp(pat, "\xE2\x96\x81") && !strcmp(c, " "))
            t->metaspace_decode = true;
        return 0;
    }
    if (!strcmp(type, "Strip")) {
        const char *c = jstr(d, "content");
        json_int_t start = json_integer_value(json_object_get(d, "start"));
        if (c && !strcmp(c, " ") && start >= 1)
            t->strip_space_decode = true;
        return 0;
    }
    if (!strcmp(type, "Metaspace")) {
        t->metaspace_decode = true;
        const char *ps = jstr(d, "prepend_scheme");
        t->strip_space_decode = ps ? strcmp(ps, "never") != 0 : jbool(d, "add_prefix_space", true);
        return 0;
    }
    /* ByteLevel, ByteFallback, Fuse: the pieces already do it */
    return 0;
}

static int32_t hf_special_id(const json_t *specials, const char *name)
{
    const json_t *e = json_object_get(specials, name);
    const json_t *ids = json_object_get(e, "ids");
    if (json_array_size(ids) != 1)
        return -1;
    return (int32_t)json_integer_value(json_array_get(ids, 0));
}

static int hf_post(Tokenizer *t, const json_t *p, char *err, size_t errcap)
{
    if (!p || json_is_null(p))
        return 0;
    const char *type = jstr(p, "type");
    if (!type)
        return 0;
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(p, "processors");
        size_t i;
        const json_t *v;
        int rc, decided = 0;
        json_array_foreach(list, i, v)
        {
            if ((rc = hf_post(t, v, err, errcap)) < 0)
                return rc;
            decided |= rc;
        }
        return decided;
    }
    if (!strcmp(type, "ByteLevel"))
        return 0;
    if (!strcmp(type, "TemplateProcessing")) {
        const json_t *single = json_object_get(p, "single");
        const json_t *specials = json_object_get(p, "special_tokens");
        size_t n = json_array_size(single);
        for (size_t i = 0; i < n; i++) {
            const json_t *st = json_object_get(json_array_get(single, i), "SpecialToken");
            if (!st)
                continue;
            int32_t id = hf_special_id(specials, jstr(st, "id") ? jstr(st, "id") : "");
            if (id < 0) {
                err_fmt(err, errcap, "TemplateProcessing special token without a single id");
                return ERR_UNSUPPORTED;
            }
            if (i == 0) {
                t->add_bos = true;
                t->bos = id;
            } else if (i == n - 1) {
                t->add_eos = true;
                t->eos = id;
            } else {
                err_fmt(err, errcap, "TemplateProcessing with a special token in the middle is not supported");
                return ERR_UNSUPPORTED;
            }
        }
        return 1; /* decided add_bos/add_eos */
    }
    err_fmt(err, errcap, "post_processor \"%s\" is not supported", type);
    return ERR_UNSUPPORTED;
}

static int32_t find_linear(const Tokenizer *t, const char *s)
{
    size_t n = strlen(s);
    int32_t found = -1;
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (t->text_len[id] == n && memcmp(t->text_pool + t->text_off[id], s, n) == 0)
            found = id;
    return found;
}

static int hf_vocab(Tokenizer *t, const json_t *model, const json_t *added, char *err, size_t errcap)
{
    const json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) {
        err_fmt(err, errcap, "model.vocab is not an object");
        return ERR_FORMAT;
    }
    json_int_t max_id = -1;
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)vocab, key, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= INT32_MAX) {
            err_fmt(err, errcap, "model.vocab[\"%.40s\"] is not a valid id", key);
            return ERR_FORMAT;
        }
        if (json_integer_value(v) > max_id)
            max_id = json_integer_value(v);
    }
    size_t i;
    json_array_foreach(added, i, v)
    {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (!json_is_integer(json_object_get(v, "id")) || id < 0 || id >= INT32_MAX || !jstr(v, "content")) {
            err_fmt(err, errcap, "added_tokens[%zu] malformed", i);
            return ERR_FORMAT;
        }
        if (id > max_id)
            max_id = id;
    }
    if (max_id < 0) {
        err_fmt(err, errcap, "empty vocabulary");
        return ERR_FORMAT;
    }
    int rc;
    if ((rc = tok_set_vocab(t, (int32_t)max_id + 1)))
        return rc;
    /* keys of a JSON object: jansson keeps embedded NULs out, lengths via strlen */
    json_object_foreach((json_t *)vocab, key, v)
    {
        if ((rc = tok_set_token(t, (int32_t)json_integer_value(v), key, strlen(key), 0, TOK_ATTR_NORMAL)))
            return rc;
    }
    json_array_foreach(added, i, v)
    {
        int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
        const json_t *c = json_object_get(v, "content");
        bool special = jbool(v, "special", false);
        if ((rc = tok_set_token(t, id, json_string_value(c), json_string_length(c), 0,
                                special ? TOK_ATTR_CONTROL : TOK_ATTR_USER_DEFINED)))
            return rc;
        if ((rc = tok_add_added(t, id, special, jbool(v, "lstrip", false), jbool(v, "rstrip", false),
                                jbool(v, "single_word", false))))
            return rc;
    }
    /* holes in the id space: unused placeholders */
    for (int32_t id = 0; id < t->n_vocab; id++)
        if (!t->attr[id] && (rc = tok_set_token(t, id, "", 0, 0, TOK_ATTR_UNUSED)))
            return rc;
    return 0;
}

static int hf_merges(Tokenizer *t, const json_t *model, char *err, size_t errcap)
{
    const json_t *merges = json_object_get(model, "merges");
    size_t i;
    const json_t *v;
    int rc;
    json_array_foreach(merges, i, v)
    {
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            size_t l = json_string_length(v);
            const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
            if (!sp) {
                err_fmt(err, errcap, "merges[%zu] \"%.40s\" has no space", i, s);
                return ERR_FORMAT;
            }
            rc = tok_add_merge(t, s, (size_t)(sp - s), sp + 1, l - (size_t)(sp - s) - 1);
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                   json_is_string(json_array_get(v, 1))) {
            const json_t *a = json_array_get(v, 0), *b = json_array_get(v, 1);
            rc = tok_add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                               json_string_length(b));
        } else {
            err_fmt(err, errcap, "merges[%zu] malformed", i);
            return ERR_FORMAT;
        }
        if (rc)
            return rc;
    }
    return 0;
}

static json_t *load_json(const char *path, bool required, char *err, size_t errcap, int *rc)
{
    json_error_t je;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        if (required) {
            err_fmt(err, errcap, "%s: cannot open", path);
            *rc = ERR_IO;
        }
        return NULL;
    }
    json_t *j = json_loadf(fp, JSON_ALLOW_NUL, &je);
    fclose(fp);
    if (!j) {
        err_fmt(err, errcap, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        *rc = ERR_FORMAT;
    }
    return j;
}

static int load_hf(Tokenizer *t, const json_t *root, const json_t *cfg, const char *template_path, char *err,
                   size_t errcap)
{
    int rc;
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        err_fmt(err, errcap, "tokenizer.json has no model");
        return ERR_FORMAT;
    }
    const char *mtype = jstr(model, "type");
    if (mtype ? strcmp(mtype, "BPE") != 0 : !json_object_get(model, "merges")) {
        err_fmt(err, errcap, "model type \"%s\" is not supported (only BPE)", mtype ? mtype : "?");
        return ERR_UNSUPPORTED;
    }
    const json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout)) {
        err_fmt(err, errcap, "BPE dropout is not supported");
        return ERR_UNSUPPORTED;
    }
    const char *csp = jstr(model, "continuing_subword_prefix"), *eow = jstr(model, "end_of_word_suffix");
    if ((csp && *csp) || (eow && *eow)) {
        err_fmt(err, errcap, "BPE continuing_subword_prefix/end_of_word_suffix are not supported");
        return ERR_UNSUPPORTED;
    }
    t->model = TOK_MODEL_BPE;
    t->byte_fallback = jbool(model, "byte_fallback", false);
    t->fuse_unk = jbool(model, "fuse_unk", false);
    t->ignore_merges = jbool(model, "ignore_merges", false);

    if ((rc = hf_vocab(t, model, json_object_get(root, "added_tokens"), err, errcap)) ||
        (rc = hf_merges(t, model, err, errcap)) ||
        (rc = hf_normalizer(t, json_object_get(root, "normalizer"), err, errcap)) ||
        (rc = hf_pretokenizer(t, json_object_get(root, "pre_tokenizer"), err, errcap)) ||
        (rc = hf_decoder(t, json_object_get(root, "decoder"), err, errcap)))
        return rc;
    snprintf(t->kind_name, sizeof t->kind_name, "%s", t->byte_level ? "bpe" : "bpe-fallback");

    int post = hf_post(t, json_object_get(root, "post_processor"), err, errcap);
    if (post < 0)
        return post;
    if (post == 0 && cfg) {
        t->add_bos = jbool(cfg, "add_bos_token", false);
        t->add_eos = jbool(cfg, "add_eos_token", false);
    }

    const json_t *tmpl = cfg ? json_object_get(cfg, "chat_template") : NULL;
    if (json_is_string(tmpl)) {
        if ((rc = tok_set_template(t, json_string_value(tmpl), json_string_length(tmpl))))
            return rc;
    } else if (json_is_array(tmpl)) { /* [{"name": ..., "template": ...}]: the default one */
        size_t i;
        const json_t *v;
        json_array_foreach(tmpl, i, v)
        {
            const char *name = jstr(v, "name");
            const json_t *src = json_object_get(v, "template");
            if (name && !strcmp(name, "default") && json_is_string(src) &&
                (rc = tok_set_template(t, json_string_value(src), json_string_length(src))))
                return rc;
        }
    }
    if (template_path) {
        FILE *fp = fopen(template_path, "rb");
        if (fp) {
            char *buf = NULL;
            size_t len = 0, cap = 0, got;
            char chunk[4096];
            while ((got = fread(chunk, 1, sizeof chunk, fp)) > 0) {
                if (len + got > cap) {
                    cap = (len + got) * 2;
                    char *nb = realloc(buf, cap);
                    if (!nb) {
                        free(buf);
                        fclose(fp);
                        return ERR_NOMEM;
                    }
                    buf = nb;
                }
                memcpy(buf + len, chunk, got);
                len += got;
            }
            fclose(fp);
            rc = tok_set_template(t, buf ? buf : "", len);
            free(buf);
            if (rc)
                return rc;
        }
    }

    /* names -> ids (the vocabulary map is built by tok_finish, so scan) */
    const char *unk = jstr(model, "unk_token");
    if (unk) {
        t->unk = find_linear(t, unk);
        if (t->unk >= 0 && !(t->attr[t->unk] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)))
            t->attr[t->unk] = TOK_ATTR_UNKNOWN;
    }
    if (cfg) {
        const char *names[] = { jtoken(cfg, "bos_token"), jtoken(cfg, "eos_token"), jtoken(cfg, "pad_token"),
                                jtoken(cfg, "unk_token") };
        int32_t *dst[] = { &t->bos, &t->eos, &t->pad, &t->unk };
        for (int i = 0; i < 4; i++) {
            int32_t id = names[i] ? find_linear(t, names[i]) : -1;
            if (id >= 0 && (i < 3 || *dst[i] < 0))
                *dst[i] = id;
        }
    }
    return tok_finish(t, err, errcap);
}

int tok_load_hf_files(const char *tokenizer_json_path, const char *config_path, Tokenizer **out, char *err,
                      size_t errcap)
{
    if (!tokenizer_json_path || !out)
        return ERR_ARG;
    *out = NULL;
    int rc = 0;
    json_t *root = load_json(tokenizer_json_path, true, err, errcap, &rc);
    if (!root)
        return rc;
    json_t *cfg = NULL;
    if (config_path) {
        cfg = load_json(config_path, false, err, errcap, &rc);
        if (!cfg && rc) {
            json_decref(root);
            return rc;
        }
    }
    Tokenizer *t = tok_alloc();
    if (!t)
        rc = ERR_NOMEM;
    else {
        /* chat_template.jinja beside the config wins over the config's */
        char *tp = NULL;
        if (config_path) {
            const char *slash = strrchr(config_path, '/');
            size_t dl = slash ? (size_t)(slash - config_path + 1) : 0;
            tp = malloc(dl + 32);
            if (tp) {
                memcpy(tp, config_path, dl);
                strcpy(tp + dl, "chat_template.jinja");
            }
        }
        rc = load_hf(t, root, cfg, tp, err, errcap);
        free(tp);
    }
    json_decref(root);
    json_decref(cfg);
    if (rc) {
        if (rc == ERR_NOMEM)
            err_fmt(err, errcap, "out of memory loading the tokenizer");
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tok_load_hf(const char *dir, Tokenizer **out, char *err, size_t errcap)
{
    if (!dir || !out)
        return ERR_ARG;
    size_t dl = strlen(dir);
    char *a = malloc(dl + 32), *b = malloc(dl + 32);
    if (!a || !b) {
        free(a);
        free(b);
        return ERR_NOMEM;
    }
    snprintf(a, dl + 32, "%s/tokenizer.json", dir);
    snprintf(b, dl + 32, "%s/tokenizer_config.json", dir);
    int rc = tok_load_hf_files(a, b, out, err, errcap);
    free(a);
    free(b);
    return rc;
}
