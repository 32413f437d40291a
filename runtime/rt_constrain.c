/*
 * runtime/rt_constrain.c — vocabulary, constraint compilation and the
 * token-level check (runtime/rt_constrain.h).
 */
#include "runtime/rt_constrain.h"

#include <stdlib.h>
#include <string.h>

#include "base/err.h"

int rtc_vocab_new(const Tokenizer *t, CVocab **out, char *err, size_t errcap)
{
    *out = NULL;
    int32_t n = tok_vocab_size(t);
    const char **bytes = calloc((size_t)n, sizeof *bytes);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    uint8_t *flags = calloc((size_t)n, 1);
    int rc = ERR_NOMEM;
    if (!bytes || !lens || !flags) goto done;
    for (int32_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *p = tok_token_piece(t, i, &len);
        bytes[i] = p ? p : "";
        lens[i] = p ? len : 0;
        if (tok_is_eog(t, i)) flags[i] = CV_EOG;
        else if (tok_is_special(t, i) || len == 0) flags[i] = CV_SPECIAL;
    }
    rc = cv_new(n, bytes, lens, flags, out);
done:
    if (rc) err_fmt(err, errcap, "constraint vocabulary: %s", err_str(rc));
    free(bytes);
    free(lens);
    free(flags);
    return rc;
}

int rtc_compile(RtConstraintKind kind, const char *src, size_t len, CGrammar **out, char *err,
                size_t errcap)
{
    return rtc_compile_flags(kind, src, len, 0, out, err, errcap);
}

int rtc_compile_flags(RtConstraintKind kind, const char *src, size_t len, unsigned flags, CGrammar **out,
                      char *err, size_t errcap)
{
    *out = NULL;
    char msg[512] = "";
    int rc = 0, pos = 0, line = 0, col = 0;
    CgJsonOptions jo = {.any_whitespace = (flags & RTC_ANY_WHITESPACE) != 0};
    if ((flags & RTC_ANY_WHITESPACE) && kind != RT_CONSTRAINT_JSON) {
        err_fmt(err, errcap, "any_whitespace applies to a json constraint only");
        return ERR_ARG;
    }
    switch (kind) {
    case RT_CONSTRAINT_NONE:
    case RT_CONSTRAINT_CHOICES:
        return 0;
    case RT_CONSTRAINT_REGEX:
        rc = cg_compile_regex(src, len, NULL, out, &pos, msg, sizeof msg);
        if (rc) err_fmt(err, errcap, "regex: %s (at byte %d)", msg, pos);
        return rc;
    case RT_CONSTRAINT_JSON:
        rc = len ? cg_compile_json(src, len, &jo, NULL, out, msg, sizeof msg)
                 : cg_compile_json_any(&jo, out, msg, sizeof msg);
        if (rc) err_fmt(err, errcap, "json schema: %s", msg);
        return rc;
    case RT_CONSTRAINT_GRAMMAR:
    case RT_CONSTRAINT_EBNF:
        rc = kind == RT_CONSTRAINT_GRAMMAR ? cg_compile_gbnf(src, len, NULL, out, &line, &col, msg, sizeof msg)
                                           : cg_compile_ebnf(src, len, NULL, out, &line, &col, msg, sizeof msg);
        if (rc) err_fmt(err, errcap, "grammar: %s (line %d, column %d)", msg, line, col);
        return rc;
    case RT_CONSTRAINT_TYPE: {
        char t[16];
        size_t n = len < sizeof t - 1 ? len : sizeof t - 1;
        memcpy(t, src, n);
        t[n] = 0;
        rc = cg_compile_type(t, out, msg, sizeof msg);
        if (rc) err_fmt(err, errcap, "type: %s", msg);
        return rc;
    }
    }
    err_fmt(err, errcap, "unknown constraint kind %d", (int)kind);
    return ERR_ARG;
}

int rtc_check(Tokenizer *t, CVocab *v, CGrammar *g, const char *text, size_t len, unsigned flags,
              uint64_t seed, size_t *reject_at, char *err, size_t errcap)
{
    *reject_at = 0;
    int32_t *ids = NULL;
    int n = 0, rc;
    TokIds tk = {0};
    if (flags & RTC_SEGMENT_RANDOM) {
        int cap = (int)len + 1;
        ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) return err_fmt(err, errcap, "out of memory"), ERR_NOMEM;
        n = cv_random_segment(v, text, len, seed, ids, cap);
        if (n < 0) {
            free(ids);
            err_fmt(err, errcap, "the text cannot be tokenized by this vocabulary");
            return n;
        }
    } else {
        rc = tok_encode(t, text, len, 0, &tk);
        if (rc) {
            err_fmt(err, errcap, "tokenize: %s", tok_last_error(t));
            tok_ids_free(&tk);
            return rc;
        }
        ids = tk.ids;
        n = (int)tk.n;
    }
    CMatcher *m = NULL;
    uint32_t *mask = NULL;
    rc = cm_new(g, v, &m);
    if (!rc) {
        mask = malloc(cv_mask_words(v) * sizeof *mask);
        if (!mask) rc = ERR_NOMEM;
    }
    if (rc) {
        err_fmt(err, errcap, "matcher: %s", err_str(rc));
        goto out;
    }
    size_t at = 0;
    rc = 1;
    for (int i = 0; i < n && rc == 1; i++) {
        int k = cm_fill_mask(m, mask);
        if (k < 0) {
            rc = k;
            err_fmt(err, errcap, "mask: %s", err_str(k));
            break;
        }
        int32_t id = ids[i];
        if (!(mask[id >> 5] >> (id & 31) & 1) || cm_accept_token(m, id) != 0) {
            rc = 0;
            *reject_at = at;
            break;
        }
        size_t pl = 0;
        const char *p = tok_token_piece(t, id, &pl);
        (void)p;
        at += pl;
    }
    if (rc == 1) {
        /* end of generation: some end token must be allowed now */
        int k = cm_fill_mask(m, mask);
        int ok = k >= 0 && cm_can_end(m);
        if (!ok) {
            rc = 0;
            *reject_at = len;
        }
    }
out:
    free(mask);
    cm_free(m);
    if (flags & RTC_SEGMENT_RANDOM) free(ids);
    else tok_ids_free(&tk);
    return rc;
}
