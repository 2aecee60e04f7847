/*
 * Phone number normalization to E.164 ("+8613500000002", "+8675528000123"), following the
 * provider's rule: country code + mobile number, or country code + area code without its
 * trunk 0 + subscriber number. China (+86) is validated fully (mobile 1[3-9] + 9 digits;
 * landline area code 10, 2x or [3-9]xx, subscriber 7-8 digits starting 2-9); other countries
 * get an E.164 length check only. Pure function over bytes: no allocation, no globals that
 * change, never reads past len nor writes past outsz.
 */
#include <string.h>

#include "parsers.h"

#define MAX_DIGITS 20           /* more than this is an error, whatever the country */
#define E164_MAX 15

/* The sentence of each reason: a format with one %c (CTC_PHONE_CHAR: the byte) or one %d
 * (CTC_PHONE_DIGITS: how many digits), written by the binding (request.c). */
const char *const ctc_phone_sentences[CTC_PHONE_REASONS] = {
    [CTC_PHONE_EMPTY] = "phone number is empty",
    [CTC_PHONE_NO_DIGITS] = "phone number has no digits",
    [CTC_PHONE_TOO_MANY] = "phone number has more than 20 digits",
    [CTC_PHONE_PLUS] = "'+' is allowed only at the start of a phone number",
    [CTC_PHONE_NUL] = "phone number contains a NUL byte",
    [CTC_PHONE_CTRL] = "phone number contains a control character",
    [CTC_PHONE_FULLWIDTH] = "phone number contains a full-width digit; use the ASCII digits 0-9",
    [CTC_PHONE_NONASCII] = "phone number contains a non-ASCII character",
    [CTC_PHONE_CHAR] = "phone number contains '%c'",
    [CTC_PHONE_INTL_EMPTY] = "phone number has no digits after the international prefix",
    [CTC_PHONE_CC_ZERO] = "a country code cannot start with 0",
    [CTC_PHONE_86_EMPTY] = "phone number has no digits after the country code 86",
    [CTC_PHONE_DIGITS] = "phone number has %d digits; a Chinese mobile number has 11",
    [CTC_PHONE_MOBILE_PREFIX] = "a Chinese mobile number starts with 13 to 19",
    [CTC_PHONE_AREA] = "invalid Chinese area code (Beijing is 010, others are 02x or 0[3-9]xx)",
    [CTC_PHONE_SERVICE] = "400 and 800 service numbers cannot be used; give a mobile or landline number",
    [CTC_PHONE_LAND_SHORT] = "phone number is too short for a Chinese landline number",
    [CTC_PHONE_SUB_LEN] = "a Chinese landline number has 7 or 8 digits after the area code",
    [CTC_PHONE_SUB_FIRST] = "a Chinese landline subscriber number cannot start with 0 or 1",
    [CTC_PHONE_NO_TRUNK] = "a Chinese landline number starts with 0 and its area code (e.g. 0755-28000123)",
    [CTC_PHONE_86_REST] =
        "phone number starts with 86 but the rest is not a valid Chinese mobile or landline number",
    [CTC_PHONE_SHORT] = "phone number is too short (fewer than 4 digits after the country code)",
    [CTC_PHONE_LONG] = "phone number is too long (E.164 allows 15 digits including the country code)",
    [CTC_PHONE_DEFAULT_CC] = "default country code is not a valid country code",
    [CTC_PHONE_OUTSZ] = "output buffer too small for a phone number",
};

/* a refusal: the reason and its detail */
static int refuse(ctc_phone_why *why, int reason, int detail)
{
    why->reason = reason;
    why->detail = detail;
    return -1;
}

/* ---------------------------------------------------------------------------------------
 * Scanning
 * ------------------------------------------------------------------------------------- */

typedef struct {
    char d[MAX_DIGITS];
    size_t n;        /* digits stored (== digits seen, since more is an error) */
    int plus;
} digits_t;

static int is_ignored(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '-' || c == '.' || c == '(' || c == ')';
}

/* Collects the digits and the leading '+', rejecting every other significant character. */
static int collect(const char *s, size_t len, digits_t *dg, ctc_phone_why *why)
{
    size_t i;
    size_t seen = 0;
    int blank = 1;      /* nothing but spaces and tabs so far */

    dg->n = 0;
    dg->plus = 0;
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c != ' ' && c != '\t')
            blank = 0;
        if (c >= '0' && c <= '9') {
            if (seen < MAX_DIGITS)
                dg->d[seen] = (char)c;
            seen++;
        } else if (is_ignored(c)) {
            continue;
        } else if (c == '+') {
            if (dg->plus || seen > 0)
                return refuse(why, CTC_PHONE_PLUS, c);
            dg->plus = 1;
        } else if (c == 0) {
            return refuse(why, CTC_PHONE_NUL, c);
        } else if (c < 0x20 || c == 0x7f) {
            return refuse(why, CTC_PHONE_CTRL, c);
        } else if (c >= 0x80) {
            /* U+FF10..U+FF19 (full-width digits) are EF BC 90..99 in UTF-8 */
            if (c == 0xEF && i + 2 < len && (unsigned char)s[i + 1] == 0xBC
                && (unsigned char)s[i + 2] >= 0x90 && (unsigned char)s[i + 2] <= 0x99)
                return refuse(why, CTC_PHONE_FULLWIDTH, c);
            return refuse(why, CTC_PHONE_NONASCII, c);
        } else {
            return refuse(why, CTC_PHONE_CHAR, c); /* printable ASCII */
        }
    }
    if (seen > MAX_DIGITS)
        return refuse(why, CTC_PHONE_TOO_MANY, (int)seen);
    dg->n = seen;
    if (seen == 0)
        return refuse(why, blank ? CTC_PHONE_EMPTY : CTC_PHONE_NO_DIGITS, 0);
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Country codes (ITU-T E.164 assignment structure)
 * ------------------------------------------------------------------------------------- */

/* Bit k of two_digit_cc[d] is set when country code "dk" has two digits. */
static const unsigned short two_digit_cc[10] = {
    0,                                                  /* 0x: invalid */
    0,                                                  /* 1: one digit */
    (1u << 0) | (1u << 7),                              /* 20, 27 */
    0x1Fu | (1u << 6) | (1u << 9),                      /* 30-34, 36, 39 */
    (1u << 0) | (1u << 1) | 0x3F8u,                     /* 40, 41, 43-49 */
    0x1FEu,                                             /* 51-58 */
    0x7Fu,                                              /* 60-66 */
    0,                                                  /* 7: one digit */
    (1u << 1) | (1u << 2) | (1u << 4) | (1u << 6),      /* 81, 82, 84, 86 */
    0x3Fu | (1u << 8)                                   /* 90-95, 98 */
};

/* Length of the country code at the start of p (p[0] is 1-9, m >= 1). */
static size_t cc_length(const char *p, size_t m)
{
    if (p[0] == '1' || p[0] == '7')
        return 1;
    if (m >= 2 && (two_digit_cc[p[0] - '0'] >> (p[1] - '0')) & 1u)
        return 2;
    if (m < 2)
        return 2;   /* incomplete either way; the caller reports a short number */
    return 3;
}

/* ---------------------------------------------------------------------------------------
 * China (+86)
 * ------------------------------------------------------------------------------------- */

static int is_service(const char *p, size_t m)
{
    return m >= 3 && (p[0] == '4' || p[0] == '8') && p[1] == '0' && p[2] == '0';
}

/* Area code + subscriber number, without the trunk 0. */
static int china_landline(const char *p, size_t m, ctc_phone_why *why)
{
    size_t alen;
    size_t sub;

    if (p[0] == '1') {
        if (m < 2 || p[1] != '0')
            return refuse(why, m < 2 ? CTC_PHONE_LAND_SHORT : CTC_PHONE_AREA, 0);
        alen = 2;
    } else if (p[0] == '2') {
        alen = 2;
    } else if (p[0] >= '3' && p[0] <= '9') {
        alen = 3;
        if (is_service(p, m)) 
            return refuse(why, CTC_PHONE_SERVICE, 0);
    } else 
        return refuse(why, CTC_PHONE_AREA, 0);
    if (m <= alen) 
        return refuse(why, CTC_PHONE_LAND_SHORT, 0);
    sub = m - alen;
    if (sub < 7 || sub > 8) 
        return refuse(why, CTC_PHONE_SUB_LEN, 0);
    if (p[alen] == '0' || p[alen] == '1') 
        return refuse(why, CTC_PHONE_SUB_FIRST, 0);
    return 0;
}

static int china_mobile(const char *p, size_t m, ctc_phone_why *why)
{
    if (m != 11) {
        return refuse(why, CTC_PHONE_DIGITS, (int)m);
    }
    if (p[1] < '3' || p[1] > '9') 
        return refuse(why, CTC_PHONE_MOBILE_PREFIX, 0);
    return 0;
}

/* A national number written without the trunk 0: a mobile, or area code + subscriber. */
static int china_no_trunk(const char *p, size_t m, ctc_phone_why *why)
{
    if (p[0] == '1' && !(m >= 2 && p[1] == '0'))
        return china_mobile(p, m, why);
    return china_landline(p, m, why);
}

/* The national part after "+86" / "0086": a trunk 0 is tolerated and dropped. */
static int china_after_cc(const char **pp, size_t *mp, ctc_phone_why *why)
{
    if (*mp > 0 && (*pp)[0] == '0') {
        (*pp)++;
        (*mp)--;
    }
    if (*mp == 0) 
        return refuse(why, CTC_PHONE_86_EMPTY, 0);
    return china_no_trunk(*pp, *mp, why);
}

/* A number given without an international prefix, default country 86. */
static int china_national(const char **pp, size_t *mp, ctc_phone_why *why)
{
    const char *p = *pp;
    size_t m = *mp;
    ctc_phone_why ignored;

    if (p[0] == '1')
        return china_mobile(p, m, why);   /* 11 digits starting with 1: always a mobile */
    if (p[0] == '0') {
        if (m < 2) 
            return refuse(why, CTC_PHONE_LAND_SHORT, 0);
        (*pp)++;
        (*mp)--;
        return china_landline(p + 1, m - 1, why);
    }
    if (m > 2 && p[0] == '8' && p[1] == '6' && china_no_trunk(p + 2, m - 2, &ignored) == 0) {
        *pp += 2;
        *mp -= 2;
        return 0;
    }
    if (is_service(p, m)) 
        return refuse(why, CTC_PHONE_SERVICE, 0);
    return refuse(why, (m > 2 && p[0] == '8' && p[1] == '6') ? CTC_PHONE_86_REST : CTC_PHONE_NO_TRUNK, 0);
}

/* ---------------------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------------------- */

static int other_country(size_t cclen, size_t m, ctc_phone_why *why)
{
    if (m < 4) 
        return refuse(why, CTC_PHONE_SHORT, 0);
    if (m > 14 || cclen + m > E164_MAX) 
        return refuse(why, CTC_PHONE_LONG, 0);
    return 0;
}

static int emit(const char *cc, size_t cclen, const char *nat, size_t m, char *out,
                size_t outsz, ctc_phone_why *why)
{
    size_t need = 1 + cclen + m + 1;

    if (out == NULL || outsz < need || need > CTC_PHONE_MAX) 
        return refuse(why, CTC_PHONE_OUTSZ, 0);
    out[0] = '+';
    memcpy(out + 1, cc, cclen);
    memcpy(out + 1 + cclen, nat, m);
    out[1 + cclen + m] = '\0';
    return 0;
}

/* The usual number, 11 plain digits of a Chinese mobile with the default code 86, written as the
 * rules of ctc_phone_normalize write it (china_mobile, emit) without collecting: 0, or -1 (not
 * that case: the rules decide). */
static int usual_mobile(const char *s, size_t len, const char *cc, size_t cclen, char *out, size_t outsz)
{
    size_t i;
    if (len != 11 || cc == NULL || cclen != 2 || cc[0] != '8' || cc[1] != '6' || out == NULL || outsz < 15
        || s[0] != '1' || s[1] < '3' || s[1] > '9')
        return -1;
    for (i = 2; i < 11; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    memcpy(out, "+86", 3);
    memcpy(out + 3, s, 11);
    out[14] = '\0';
    return 0;
}

int ctc_phone_normalize(const char *s, size_t len, const char *cc, size_t cclen,
                        char *out, size_t outsz, ctc_phone_why *why)
{
    digits_t dg;
    ctc_phone_why dummy;
    const char *p;
    size_t m;
    size_t i;

    if (why == NULL)
        why = &dummy;
    if (out != NULL && outsz > 0)
        out[0] = '\0';
    if (s == NULL)
        len = 0;
    if (usual_mobile(s, len, cc, cclen, out, outsz) == 0)
        return 0;
    if (collect(s, len, &dg, why) != 0)
        return -1;

    if (dg.plus || (dg.n >= 2 && dg.d[0] == '0' && dg.d[1] == '0')) {
        /* International: "+CC..." or "00CC..." */
        size_t ccl;
        p = dg.d + (dg.plus ? 0 : 2);
        m = dg.n - (dg.plus ? 0 : 2);
        if (m == 0) 
            return refuse(why, CTC_PHONE_INTL_EMPTY, 0);
        if (p[0] == '0') 
            return refuse(why, CTC_PHONE_CC_ZERO, 0);
        ccl = cc_length(p, m);
        if (ccl == 2 && m >= 2 && p[0] == '8' && p[1] == '6') {
            const char *nat = p + 2;
            size_t nm = m - 2;
            if (china_after_cc(&nat, &nm, why) != 0)
                return -1;
            return emit("86", 2, nat, nm, out, outsz, why);
        }
        if (m < ccl) 
            return refuse(why, CTC_PHONE_SHORT, 0);
        if (other_country(ccl, m - ccl, why) != 0)
            return -1;
        return emit(p, ccl, p + ccl, m - ccl, out, outsz, why);
    }

    /* National: use the default country code */
    if (cc != NULL && cclen > 0 && cc[0] == '+') {
        cc++;
        cclen--;
    }
    if (cc == NULL || cclen == 0 || cclen > 3 || cc[0] == '0') 
        return refuse(why, CTC_PHONE_DEFAULT_CC, 0);
    for (i = 0; i < cclen; i++) {
        if (cc[i] < '0' || cc[i] > '9') 
            return refuse(why, CTC_PHONE_DEFAULT_CC, 0);
    }
    if (cc_length(cc, cclen) != cclen) 
        return refuse(why, CTC_PHONE_DEFAULT_CC, 0);
    p = dg.d;
    m = dg.n;
    if (cclen == 2 && cc[0] == '8' && cc[1] == '6') {
        if (china_national(&p, &m, why) != 0)
            return -1;
        return emit("86", 2, p, m, out, outsz, why);
    }
    if (p[0] == '0') {   /* trunk prefix */
        p++;
        m--;
    }
    if (other_country(cclen, m, why) != 0)
        return -1;
    return emit(cc, cclen, p, m, out, outsz, why);
}
