/* tests/unit/test_base.c — base/: UTF-8 against a reference written from the
 * definition, the string buffer, the error list, the role names. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "base/err.h"
#include "base/role.h"
#include "base/strbuf.h"
#include "base/suggest.h"
#include "base/utf8.h"

/* Reference: decode by the bit pattern alone, then reject what Unicode
 * forbids (overlong, surrogate, above U+10FFFF). */
static int ref_decode(const unsigned char *s, size_t n, uint32_t *cp)
{
    int len;
    uint32_t v;
    if (n == 0) return 0;
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    if ((s[0] & 0xE0) == 0xC0) { len = 2; v = s[0] & 0x1F; }
    else if ((s[0] & 0xF0) == 0xE0) { len = 3; v = s[0] & 0x0F; }
    else if ((s[0] & 0xF8) == 0xF0) { len = 4; v = s[0] & 0x07; }
    else return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < min[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

Test(utf8, every_code_point_round_trips)
{
    for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
        char b[4];
        int n = utf8_encode(cp, b);
        cr_assert(n >= 1 && n <= 4);
        uint32_t back = 0;
        int m = utf8_decode(b, (size_t)n, &back);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            cr_assert_eq(m, 0, "surrogate %x decoded", cp);
            continue;
        }
        cr_assert_eq(m, n);
        cr_assert_eq(back, cp);
    }
    char b[4];
    cr_assert_eq(utf8_encode(0x110000, b), 0);
}

Test(utf8, decode_agrees_with_reference_on_all_three_byte_inputs)
{
    unsigned char s[4] = {0};
    for (uint32_t x = 0; x < (1u << 24); x++) {
        s[0] = (unsigned char)(x >> 16), s[1] = (unsigned char)(x >> 8), s[2] = (unsigned char)x;
        uint32_t a = 0, b = 0;
        for (size_t n = 1; n <= 3; n++) {
            int la = utf8_decode((const char *)s, n, &a), lb = ref_decode(s, n, &b);
            if (la != lb || (la && a != b)) cr_assert_fail("%06x n=%zu: %d vs %d", x, n, la, lb);
        }
    }
}

Test(utf8, four_byte_leads_and_validation)
{
    unsigned char s[4];
    for (unsigned c0 = 0xF0; c0 <= 0xFF; c0++)
        for (unsigned c1 = 0x70; c1 <= 0xC0; c1++) {
            s[0] = (unsigned char)c0, s[1] = (unsigned char)c1, s[2] = 0x80, s[3] = 0xBF;
            uint32_t a = 0, b = 0;
            int la = utf8_decode((const char *)s, 4, &a), lb = ref_decode(s, 4, &b);
            cr_assert(la == lb && (!la || a == b), "%02x %02x", c0, c1);
        }
    const char *ok = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
    cr_assert(utf8_valid(ok, strlen(ok)));
    cr_assert_eq(utf8_count(ok, strlen(ok)), 5);
    const char *bad = "abcdefghij\xc0\xafk";
    cr_assert_eq(utf8_invalid_at(bad, strlen(bad)), 10);
    cr_assert_eq(utf8_invalid_at("ab\xe2\x82", 4), 2);   /* truncated */
    cr_assert_eq(utf8_lead_len(0x80), 0);
    cr_assert_eq(utf8_lead_len(0xF4), 4);
}

Test(strbuf, append_printf_detach)
{
    StrBuf b;
    sb_init(&b);
    for (int i = 0; i < 1000; i++) sb_appendc(&b, 'x');
    sb_printf(&b, "%d-%s", 42, "y");
    cr_assert_eq(b.len, 1004);
    cr_assert_str_eq(b.data + 1000, "42-y");
    char big[600];
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = 0;
    sb_printf(&b, "%s", big);        /* longer than the small buffer */
    cr_assert_eq(b.len, 1004 + 599);
    sb_truncate(&b, 3);
    cr_assert_str_eq(b.data, "xxx");
    cr_assert(!b.oom);
    char *s = sb_detach(&b);
    cr_assert_str_eq(s, "xxx");
    cr_assert_null(b.data);
    free(s);
    s = sb_detach(&b);
    cr_assert_str_eq(s, "");
    free(s);
}

Test(err, one_list)
{
    cr_assert_str_eq(err_str(ERR_NOMEM), "out of memory");
    cr_assert_str_eq(err_name(ERR_NO_SLOTS), "ERR_NO_SLOTS");
    cr_assert_str_eq(err_str(12345), "unknown error");
    cr_assert_str_eq(err_str(0), "ok");
    /* codes are distinct */
    static const int codes[] = {
#define CODE(name, value, msg) value,
        SGL_ERRORS(CODE)
#undef CODE
    };
    size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++) cr_assert_neq(codes[i], codes[j]);
    char buf[8];
    cr_assert_eq(err_fmt(buf, sizeof buf, "%s", "truncated message"), -1);
    cr_assert_str_eq(buf, "truncat");
}

Test(role, names)
{
    cr_assert_str_eq(role_name(ROLE_ASSISTANT), "assistant");
    cr_assert_eq(role_from_name("user", 4), ROLE_USER);
    cr_assert_eq(role_from_name("tool", 4), -1);
    cr_assert_null(role_name(ROLE_COUNT));
}

Test(suggest, closest_known_name)
{
    const char *opts[] = {"max_tokens", "min_tokens", "temperature", "top_p", "top_k", "stop", NULL, "regex"};
    size_t n = sizeof opts / sizeof opts[0];
    cr_assert_str_eq(suggest("tempreature", opts, n), "temperature");   /* a transposition */
    cr_assert_str_eq(suggest("max_token", opts, n), "max_tokens");
    cr_assert_str_eq(suggest("Max_Tokens", opts, n), "max_tokens");      /* case ignored */
    cr_assert_str_eq(suggest("top_q", opts, n), "top_p");                /* first among equals */
    cr_assert_str_eq(suggest("temp", opts, n), "temperature");           /* a prefix */
    cr_assert_null(suggest("seed", opts, n));
    cr_assert_null(suggest("stop", opts, n));                            /* itself: nothing to suggest */
    cr_assert_null(suggest("", opts, n));
    cr_assert_null(suggest("xyzzy_plugh", opts, n));
    char buf[128] = "gen() has no option 'regx'";
    cr_assert_str_eq(suggest_append(buf, sizeof buf, "regx", opts, n),
                     "gen() has no option 'regx' (did you mean 'regex'?)");
    char small[8] = "abc";
    suggest_append(small, sizeof small, "regx", opts, n);   /* truncated, still a C string */
    cr_assert_eq(strlen(small), 7);
}
