/*
 * constrain/schema_num.c — numbers of a JSON Schema as exact digit
 * regexes: decimals (Dec), integer ranges of any size, bounds with
 * fractions, multipleOf 10^-k and small integer steps.
 *
 * A number text is split by sign: the texts without '-' have value x >= 0,
 * those with '-' have value -y with y > 0 ("-0" is never produced). Each
 * side is a bound problem on a magnitude: integer part I and fraction
 * digits S (value I + 0.S):
 *
 *      I in (LI, UI)  ──► any fraction
 *      I == LI        ──► 0.S compared with 0.LF   (and 0.UF when LI == UI)
 *      I == UI        ──► 0.S compared with 0.UF
 *
 * Integer ranges are cut by length, then digit by digit (the classic
 * range-to-regex split); fraction comparisons go digit by digit and stop
 * as soon as a digit settles the comparison, so every expression is
 * linear in the bounds' lengths. Bounded numbers are written without an
 * exponent (a subset of the valid texts: sound, not every spelling).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "constrain/schema_int.h"

/* ---- decimals ----------------------------------------------------------- */

int dec_parse(const char *t, Dec *out) {
    memset(out, 0, sizeof *out);
    const char *p = t;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    size_t cap = strlen(t) + 1;
    char *d = malloc(cap);
    if (!d) return -1;
    size_t n = 0;
    long frac = 0;
    bool any = false;
    while (*p >= '0' && *p <= '9') {
        d[n++] = *p++;
        any = true;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            d[n++] = *p++;
            frac++;
            any = true;
        }
    }
    long e = 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        bool en = false;
        if (*p == '+' || *p == '-') en = *p++ == '-';
        if (!(*p >= '0' && *p <= '9')) {
            free(d);
            return -1;
        }
        while (*p >= '0' && *p <= '9') {
            if (e < 100000000) e = e * 10 + (*p - '0');
            p++;
        }
        if (en) e = -e;
    }
    if (*p || !any) {
        free(d);
        return -1;
    }
    d[n] = 0;
    size_t lead = 0;
    while (lead < n && d[lead] == '0') lead++;
    memmove(d, d + lead, n - lead + 1);
    n -= lead;
    long exp = e - frac;
    while (n > 0 && d[n - 1] == '0') {
        d[--n] = 0;
        exp++;
    }
    out->neg = n > 0 && neg;
    out->digits = d;
    out->exp = n > 0 ? exp : 0;
    return 0;
}

void dec_free(Dec *d) {
    free(d->digits);
    d->digits = NULL;
}

static int mag_cmp(const Dec *a, const Dec *b) {
    size_t na = strlen(a->digits), nb = strlen(b->digits);
    if (na == 0 || nb == 0) return (na > 0) - (nb > 0);
    long ta = (long)na + a->exp, tb = (long)nb + b->exp;   /* position of the leading digit */
    if (ta != tb) return ta < tb ? -1 : 1;
    size_t m = na > nb ? na : nb;
    for (size_t i = 0; i < m; i++) {
        char ca = i < na ? a->digits[i] : '0', cb = i < nb ? b->digits[i] : '0';
        if (ca != cb) return ca < cb ? -1 : 1;
    }
    return 0;
}

int dec_cmp(const Dec *a, const Dec *b) {
    if (a->neg != b->neg) return a->neg ? -1 : 1;
    int c = mag_cmp(a, b);
    return a->neg ? -c : c;
}

bool dec_is_int(const Dec *d) { return d->exp >= 0 || d->digits[0] == 0; }

/* Integer and fraction digits of |d|: ip without leading zeros ("0" for
 * zero), fp without trailing zeros. Malloc'd; -1 past 10,000 digits. */
static int dec_split(const Dec *d, char **ip, char **fp) {
    size_t n = strlen(d->digits);
    *ip = *fp = NULL;
    if (n == 0) {
        *ip = strdup("0");
        *fp = strdup("");
        return *ip && *fp ? 0 : -1;
    }
    if (d->exp > 10000 || d->exp < -10000) return -1;
    if (d->exp >= 0) {
        *ip = malloc(n + (size_t)d->exp + 1);
        *fp = strdup("");
        if (!*ip || !*fp) return -1;
        memcpy(*ip, d->digits, n);
        memset(*ip + n, '0', (size_t)d->exp);
        (*ip)[n + (size_t)d->exp] = 0;
        return 0;
    }
    size_t k = (size_t)(-d->exp);
    if (n > k) {
        *ip = strndup(d->digits, n - k);
        *fp = strdup(d->digits + (n - k));
    } else {
        *ip = strdup("0");
        *fp = malloc(k + 1);
        if (*fp) {
            memset(*fp, '0', k - n);
            memcpy(*fp + (k - n), d->digits, n + 1);
        }
    }
    return *ip && *fp ? 0 : -1;
}

/* s + 1 / s - 1 on canonical non-negative digit strings (s - 1: s > 0). */
static char *dstr_inc(const char *s) {
    size_t n = strlen(s);
    char *r = malloc(n + 2);
    if (!r) return NULL;
    memcpy(r + 1, s, n + 1);
    r[0] = '0';
    size_t i = n;
    while (i > 0 && r[i] == '9') r[i--] = '0';
    r[i]++;
    if (r[0] == '0') memmove(r, r + 1, n + 1);
    return r;
}

static char *dstr_dec(const char *s) {
    size_t n = strlen(s);
    char *r = strdup(s);
    if (!r) return NULL;
    size_t i = n - 1;
    while (r[i] == '0') r[i--] = '9';
    r[i]--;
    if (r[0] == '0' && n > 1) memmove(r, r + 1, n);
    return r;
}

static int dstr_cmp(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na != nb) return na < nb ? -1 : 1;
    int c = strcmp(a, b);
    return (c > 0) - (c < 0);
}

/* ---- integer ranges ----------------------------------------------------- */

static CgExpr digit(CgBuilder *b, int lo, int hi) { return cgb_byte_range(b, (uint8_t)('0' + lo), (uint8_t)('0' + hi)); }

static bool all_of(const char *s, char c) {
    for (; *s; s++)
        if (*s != c) return false;
    return true;
}

/* n-digit strings s (leading zeros allowed) with a <= s <= z. */
static CgExpr same_len(CgBuilder *b, const char *a, const char *z) {
    size_t n = strlen(a);
    if (n == 0) return cgb_empty(b);
    int a0 = a[0] - '0', z0 = z[0] - '0';
    if (a0 == z0) return cgb_seq2(b, digit(b, a0, a0), same_len(b, a + 1, z + 1));
    if (all_of(a + 1, '0') && all_of(z + 1, '9'))
        return cgb_seq2(b, digit(b, a0, z0), cgb_repeat(b, digit(b, 0, 9), (int)n - 1, (int)n - 1));
    char *nines = malloc(n), *zeros = malloc(n);
    if (!nines || !zeros) {
        free(nines);
        free(zeros);
        return -1;
    }
    memset(nines, '9', n - 1);
    nines[n - 1] = 0;
    memset(zeros, '0', n - 1);
    zeros[n - 1] = 0;
    CgExpr alts[3];
    int k = 0;
    alts[k++] = cgb_seq2(b, digit(b, a0, a0), same_len(b, a + 1, nines));
    if (a0 + 1 <= z0 - 1)
        alts[k++] = cgb_seq2(b, digit(b, a0 + 1, z0 - 1), cgb_repeat(b, digit(b, 0, 9), (int)n - 1, (int)n - 1));
    alts[k++] = cgb_seq2(b, digit(b, z0, z0), same_len(b, zeros, z + 1));
    free(nines);
    free(zeros);
    return cgb_alt(b, alts, k);
}

/* Canonical integers (no leading zeros) in [lo, hi]; hi NULL = no bound. */
static CgExpr int_range(CgBuilder *b, const char *lo, const char *hi) {
    if (hi && dstr_cmp(lo, hi) > 0) return cgb_nothing(b);
    CgExpr alts[4];
    int k = 0;
    if (strcmp(lo, "0") == 0) {
        alts[k++] = cgb_lit(b, "0", 1);
        if (hi && strcmp(hi, "0") == 0) return alts[0];
        lo = "1";
    }
    size_t L = strlen(lo), H = hi ? strlen(hi) : 0;
    char *top = malloc(L + 1), *bot = NULL;
    if (!top) return -1;
    if (hi && H == L) {
        memcpy(top, hi, L + 1);
    } else {
        memset(top, '9', L);
        top[L] = 0;
    }
    alts[k++] = same_len(b, lo, top);
    free(top);
    if (!hi) {
        alts[k++] = cgb_seq2(b, digit(b, 1, 9), cgb_repeat(b, digit(b, 0, 9), (int)L, CG_INF));
    } else if (H > L) {
        if (H >= L + 2)
            alts[k++] = cgb_seq2(b, digit(b, 1, 9), cgb_repeat(b, digit(b, 0, 9), (int)L, (int)H - 2));
        bot = malloc(H + 1);
        if (!bot) return -1;
        bot[0] = '1';
        memset(bot + 1, '0', H - 1);
        bot[H] = 0;
        alts[k++] = same_len(b, bot, hi);
        free(bot);
    }
    return cgb_alt(b, alts, k);
}

/* ---- fractions ---------------------------------------------------------- */

/* Digit strings S after the '.', compared as 0.S with 0.L (lower) and 0.U
 * (upper); L and U have no trailing zeros. pos counts digits already
 * written (for frac_max: from frac_max on only zeros). */
typedef struct {
    CgBuilder *b;
    int frac_max;
} Fr;

static CgExpr zeros(CgBuilder *b, int min) { return cgb_repeat(b, cgb_lit(b, "0", 1), min, CG_INF); }

static CgExpr tail_any(Fr *f, int pos, bool allow_empty) {
    CgBuilder *b = f->b;
    if (f->frac_max < 0) return cgb_repeat(b, digit(b, 0, 9), allow_empty ? 0 : 1, CG_INF);
    int k = f->frac_max - pos;
    if (k < 0) k = 0;
    if (k == 0) return zeros(b, allow_empty ? 0 : 1);
    CgExpr free_digits = cgb_repeat(b, digit(b, 0, 9), allow_empty ? 0 : 1, k);
    return cgb_seq2(b, free_digits, zeros(b, 0));
}

static CgExpr some_nonzero(Fr *f, int pos) {
    CgBuilder *b = f->b;
    if (f->frac_max < 0)
        return cgb_seq(b, (CgExpr[]){zeros(b, 0), digit(b, 1, 9), tail_any(f, 0, true)}, 3);
    int k = f->frac_max - pos;
    if (k <= 0) return cgb_nothing(b);
    CgExpr alts[64];
    int n = 0;
    for (int i = 0; i < k && n < 64; i++) {
        CgExpr z = cgb_repeat(b, cgb_lit(b, "0", 1), i, i);
        alts[n++] = cgb_seq(b, (CgExpr[]){z, digit(b, 1, 9), tail_any(f, pos + i + 1, true)}, 3);
    }
    return cgb_alt(b, alts, n);
}

static CgExpr fr(Fr *f, NbKind lk, const char *L, NbKind hk, const char *U, int pos, bool allow_empty) {
    CgBuilder *b = f->b;
    if (lk == NB_INCL && !*L) lk = NB_NONE;          /* 0.S >= 0 always */
    if (hk == NB_EXCL && !*U) return cgb_nothing(b); /* 0.S < 0 never */
    if (lk == NB_NONE && hk == NB_NONE) return tail_any(f, pos, allow_empty);
    if (lk == NB_EXCL && !*L) {
        if (hk == NB_NONE) return some_nonzero(f, pos);
        if (hk == NB_INCL && !*U) return cgb_nothing(b);
    }
    if (lk == NB_NONE && hk == NB_INCL && !*U) return zeros(b, allow_empty ? 0 : 1);

    CgExpr alts[12];
    int n = 0;
    bool empty_ok = allow_empty && lk == NB_NONE && (hk != NB_EXCL || *U);
    if (empty_ok) alts[n++] = cgb_empty(b);
    int l0 = lk == NB_NONE ? -1 : (*L ? *L - '0' : 0);
    int u0 = hk == NB_NONE ? 10 : (*U ? *U - '0' : 0);
    int dmax = (f->frac_max >= 0 && pos >= f->frac_max) ? 0 : 9;
    int d = 0;
    while (d <= dmax) {
        /* the state after digit d: lower settled (>), equal (=) or dead (<) */
        int ls = lk == NB_NONE || d > l0 ? 1 : d == l0 ? 0 : -1;
        int us = hk == NB_NONE || d < u0 ? 1 : d == u0 ? 0 : -1;
        if (ls < 0 || us < 0) {
            d++;
            continue;
        }
        int e = d;
        while (e + 1 <= dmax) {
            int ls2 = lk == NB_NONE || e + 1 > l0 ? 1 : e + 1 == l0 ? 0 : -1;
            int us2 = hk == NB_NONE || e + 1 < u0 ? 1 : e + 1 == u0 ? 0 : -1;
            if (ls2 != ls || us2 != us) break;
            e++;
        }
        CgExpr rest = fr(f, ls ? NB_NONE : lk, ls ? "" : (*L ? L + 1 : ""), us ? NB_NONE : hk,
                         us ? "" : (*U ? U + 1 : ""), pos + 1, true);
        alts[n++] = cgb_seq2(b, digit(b, d, e), rest);
        d = e + 1;
    }
    return cgb_alt(b, alts, n);
}

/* The optional ".S" part for an integer part equal to a bound's. */
static CgExpr frac_part(Fr *f, NbKind lk, const char *LF, NbKind hk, const char *UF, bool allow_frac) {
    CgBuilder *b = f->b;
    NbKind lk0 = lk == NB_INCL && !*LF ? NB_NONE : lk;
    bool none_ok = lk0 == NB_NONE && (hk != NB_EXCL || *UF);
    CgExpr with = allow_frac ? cgb_seq2(b, cgb_lit(b, ".", 1), fr(f, lk, LF, hk, UF, 0, false)) : cgb_nothing(b);
    return none_ok ? cgb_alt2(b, cgb_empty(b), with) : with;
}

/* Texts of magnitudes m (no sign) with the bounds on m. */
static int magnitude(CgBuilder *b, const NumSpec *s, NbKind lk, const Dec *lo, NbKind hk, const Dec *hi,
                     CgExpr *out) {
    char *LI = NULL, *LF = NULL, *UI = NULL, *UF = NULL;
    int rc = -1;
    if (dec_split(lo, &LI, &LF) < 0) goto done;
    if (hk != NB_NONE && dec_split(hi, &UI, &UF) < 0) goto done;
    if (s->integer) {
        /* smallest and largest admissible integers */
        char *imin = (lk == NB_EXCL || *LF) ? dstr_inc(LI) : strdup(LI);
        char *imax = NULL;
        if (hk != NB_NONE) {
            bool exact = !*UF;
            if (hk == NB_EXCL && exact) {
                imax = strcmp(UI, "0") == 0 ? NULL : dstr_dec(UI);
                if (!imax) {
                    free(imin);
                    *out = cgb_nothing(b);
                    rc = 0;
                    goto done;
                }
            } else {
                imax = strdup(UI);
            }
        }
        *out = int_range(b, imin, imax);
        free(imin);
        free(imax);
        rc = 0;
        goto done;
    }
    Fr f = {b, s->frac_max};
    CgExpr alts[3];
    int n = 0;
    /* I strictly between the bounds' integer parts */
    char *mid_lo = dstr_inc(LI);
    char *mid_hi = NULL;
    bool mid_ok = true;
    if (hk != NB_NONE) {
        if (strcmp(UI, "0") == 0) mid_ok = false;
        else mid_hi = dstr_dec(UI);
    }
    CgExpr any_frac = cgb_alt2(b, cgb_empty(b), cgb_seq2(b, cgb_lit(b, ".", 1), fr(&f, NB_NONE, "", NB_NONE, "", 0, false)));
    if (mid_ok) alts[n++] = cgb_seq2(b, int_range(b, mid_lo, mid_hi), any_frac);
    free(mid_lo);
    free(mid_hi);
    if (hk != NB_NONE && strcmp(LI, UI) == 0) {
        alts[n++] = cgb_seq2(b, cgb_lit(b, LI, strlen(LI)), frac_part(&f, lk, LF, hk, UF, true));
    } else {
        alts[n++] = cgb_seq2(b, cgb_lit(b, LI, strlen(LI)), frac_part(&f, lk, LF, NB_NONE, "", true));
        if (hk != NB_NONE)
            alts[n++] = cgb_seq2(b, cgb_lit(b, UI, strlen(UI)), frac_part(&f, NB_NONE, "", hk, UF, true));
    }
    *out = cgb_alt(b, alts, n);
    rc = 0;
done:
    free(LI);
    free(LF);
    free(UI);
    free(UF);
    return rc;
}

static CgExpr json_number_any(CgBuilder *b, bool integer) {
    CgExpr intpart = cgb_alt2(b, cgb_lit(b, "0", 1), cgb_seq2(b, digit(b, 1, 9), cgb_repeat(b, digit(b, 0, 9), 0, CG_INF)));
    CgExpr sign = cgb_repeat(b, cgb_lit(b, "-", 1), 0, 1);
    if (integer) {
        /* "-0" is left out: json.dumps never writes it for an integer */
        CgExpr pos = intpart;
        CgExpr neg = cgb_seq2(b, cgb_lit(b, "-", 1), cgb_seq2(b, digit(b, 1, 9), cgb_repeat(b, digit(b, 0, 9), 0, CG_INF)));
        return cgb_alt2(b, pos, neg);
    }
    CgExpr frac = cgb_repeat(b, cgb_seq2(b, cgb_lit(b, ".", 1), cgb_repeat(b, digit(b, 0, 9), 1, CG_INF)), 0, 1);
    CgExpr e = cgb_alt2(b, cgb_lit(b, "e", 1), cgb_lit(b, "E", 1));
    CgExpr esign = cgb_repeat(b, cgb_alt2(b, cgb_lit(b, "+", 1), cgb_lit(b, "-", 1)), 0, 1);
    CgExpr exp = cgb_repeat(b, cgb_seq(b, (CgExpr[]){e, esign, cgb_repeat(b, digit(b, 0, 9), 1, CG_INF)}, 3), 0, 1);
    return cgb_seq(b, (CgExpr[]){sign, intpart, frac, exp}, 4);
}

int sn_number(CgBuilder *b, const NumSpec *s, CgExpr *out, char *err, size_t errcap) {
    if (s->lo_kind == NB_NONE && s->hi_kind == NB_NONE && s->frac_max < 0 && s->int_step <= 1) {
        *out = json_number_any(b, s->integer);
        return 0;
    }
    if (s->int_step > 1)
        return err_fmt(err, errcap, "multipleOf %lld is not supported (only 10^-k and 1)", s->int_step), ERR_UNSUPPORTED;
    if (s->lo_kind != NB_NONE && s->hi_kind != NB_NONE) {
        int c = dec_cmp(&s->lo, &s->hi);
        if (c > 0 || (c == 0 && (s->lo_kind == NB_EXCL || s->hi_kind == NB_EXCL))) {
            err_fmt(err, errcap, "minimum/maximum: no number is in the range");
            return ERR_CONSTRAINT;
        }
    }
    Dec zero = {false, "", 0};
    CgExpr alts[2];
    int n = 0;
    /* x >= 0 */
    bool pos_ok = true;
    NbKind plk = NB_INCL, phk = s->hi_kind;
    const Dec *plo = &zero, *phi = &s->hi;
    if (s->lo_kind != NB_NONE && !s->lo.neg) {
        plk = s->lo_kind;
        plo = &s->lo;
    }
    if (s->hi_kind != NB_NONE) {
        int c = dec_cmp(&s->hi, &zero);
        if (c < 0 || (c == 0 && s->hi_kind == NB_EXCL)) pos_ok = false;
    }
    /* x = -y, y > 0 */
    bool neg_ok = true;
    NbKind nlk = NB_EXCL, nhk = NB_NONE;
    Dec nlo = zero, nhi = zero;
    if (s->hi_kind != NB_NONE && s->hi.neg) {
        nlk = s->hi_kind;
        nlo = s->hi;
        nlo.neg = false;
    }
    if (s->lo_kind != NB_NONE) {
        if (!s->lo.neg) neg_ok = false;
        nhk = s->lo_kind;
        nhi = s->lo;
        nhi.neg = false;
    }
    CgExpr e;
    if (pos_ok) {
        if (magnitude(b, s, plk, plo, phk, phi, &e) < 0)
            return err_fmt(err, errcap, "minimum/maximum: bound too large to write out"), ERR_LIMIT;
        alts[n++] = e;
    }
    if (neg_ok) {
        if (magnitude(b, s, nlk, &nlo, nhk, &nhi, &e) < 0)
            return err_fmt(err, errcap, "minimum/maximum: bound too large to write out"), ERR_LIMIT;
        alts[n++] = cgb_seq2(b, cgb_lit(b, "-", 1), e);
    }
    *out = cgb_alt(b, alts, n);
    return 0;
}

/* ---- long repeats ------------------------------------------------------- */

CgExpr sx_repeat(CgBuilder *b, CgExpr x, long mn, long mx, int cap, const char *name) {
    if (cap <= 0) cap = 1000;
    long top = mx < 0 ? mn : mx;
    if (top <= cap) return cgb_repeat(b, x, (int)mn, mx < 0 ? CG_INF : (int)mx);
    long k = 1;
    while (k * k < top) k++;
    if (k > cap) return -1;
    int blk = cgb_rule(b, name);
    if (blk < 0 || cgb_define(b, blk, cgb_repeat(b, x, (int)k, (int)k)) < 0) return -1;
    CgExpr B = cgb_ref(b, blk);
    long amin = mn / k, rmin = mn % k;
    if (mx < 0) return cgb_seq2(b, cgb_repeat(b, B, (int)amin, (int)amin), cgb_repeat(b, x, (int)rmin, CG_INF));
    long A = mx / k, R = mx % k;
    if (amin == A) return cgb_seq2(b, cgb_repeat(b, B, (int)A, (int)A), cgb_repeat(b, x, (int)rmin, (int)R));
    CgExpr alts[3];
    int n = 0;
    alts[n++] = cgb_seq2(b, cgb_repeat(b, B, (int)amin, (int)amin), cgb_repeat(b, x, (int)rmin, (int)k - 1));
    if (A - 1 >= amin + 1)
        alts[n++] = cgb_seq2(b, cgb_repeat(b, B, (int)amin + 1, (int)A - 1), cgb_repeat(b, x, 0, (int)k - 1));
    alts[n++] = cgb_seq2(b, cgb_repeat(b, B, (int)A, (int)A), cgb_repeat(b, x, 0, (int)R));
    return cgb_alt(b, alts, n);
}
