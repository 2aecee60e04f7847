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

/* ---------------------------------------------------------------------------------------
 * Error sentences (static: *why points at them)
 * ------------------------------------------------------------------------------------- */

/* One sentence per printable ASCII character that may not appear in a phone number. */
static const char *const bad_char_why[128] = {
    ['!'] = "phone number contains '!'",
    ['"'] = "phone number contains '\"'",
    ['#'] = "phone number contains '#'",
    ['$'] = "phone number contains '$'",
    ['%'] = "phone number contains '%'",
    ['&'] = "phone number contains '&'",
    ['\''] = "phone number contains '''",
    ['*'] = "phone number contains '*'",
    [','] = "phone number contains ','",
    ['/'] = "phone number contains '/'",
    [':'] = "phone number contains ':'",
    [';'] = "phone number contains ';'",
    ['<'] = "phone number contains '<'",
    ['='] = "phone number contains '='",
    ['>'] = "phone number contains '>'",
    ['?'] = "phone number contains '?'",
    ['@'] = "phone number contains '@'",
    ['A'] = "phone number contains 'A'",
    ['B'] = "phone number contains 'B'",
    ['C'] = "phone number contains 'C'",
    ['D'] = "phone number contains 'D'",
    ['E'] = "phone number contains 'E'",
    ['F'] = "phone number contains 'F'",
    ['G'] = "phone number contains 'G'",
    ['H'] = "phone number contains 'H'",
    ['I'] = "phone number contains 'I'",
    ['J'] = "phone number contains 'J'",
    ['K'] = "phone number contains 'K'",
    ['L'] = "phone number contains 'L'",
    ['M'] = "phone number contains 'M'",
    ['N'] = "phone number contains 'N'",
    ['O'] = "phone number contains 'O'",
    ['P'] = "phone number contains 'P'",
    ['Q'] = "phone number contains 'Q'",
    ['R'] = "phone number contains 'R'",
    ['S'] = "phone number contains 'S'",
    ['T'] = "phone number contains 'T'",
    ['U'] = "phone number contains 'U'",
    ['V'] = "phone number contains 'V'",
    ['W'] = "phone number contains 'W'",
    ['X'] = "phone number contains 'X'",
    ['Y'] = "phone number contains 'Y'",
    ['Z'] = "phone number contains 'Z'",
    ['['] = "phone number contains '['",
    ['\\'] = "phone number contains '\\'",
    [']'] = "phone number contains ']'",
    ['^'] = "phone number contains '^'",
    ['_'] = "phone number contains '_'",
    ['`'] = "phone number contains '`'",
    ['a'] = "phone number contains 'a'",
    ['b'] = "phone number contains 'b'",
    ['c'] = "phone number contains 'c'",
    ['d'] = "phone number contains 'd'",
    ['e'] = "phone number contains 'e'",
    ['f'] = "phone number contains 'f'",
    ['g'] = "phone number contains 'g'",
    ['h'] = "phone number contains 'h'",
    ['i'] = "phone number contains 'i'",
    ['j'] = "phone number contains 'j'",
    ['k'] = "phone number contains 'k'",
    ['l'] = "phone number contains 'l'",
    ['m'] = "phone number contains 'm'",
    ['n'] = "phone number contains 'n'",
    ['o'] = "phone number contains 'o'",
    ['p'] = "phone number contains 'p'",
    ['q'] = "phone number contains 'q'",
    ['r'] = "phone number contains 'r'",
    ['s'] = "phone number contains 's'",
    ['t'] = "phone number contains 't'",
    ['u'] = "phone number contains 'u'",
    ['v'] = "phone number contains 'v'",
    ['w'] = "phone number contains 'w'",
    ['x'] = "phone number contains 'x'",
    ['y'] = "phone number contains 'y'",
    ['z'] = "phone number contains 'z'",
    ['{'] = "phone number contains '{'",
    ['|'] = "phone number contains '|'",
    ['}'] = "phone number contains '}'",
    ['~'] = "phone number contains '~'",
};

#define MOBILE_COUNT(n) "phone number has " #n " digits; a Chinese mobile number has 11"
static const char *const mobile_count_why[MAX_DIGITS + 1] = {
    "phone number has no digits",
    "phone number has 1 digit; a Chinese mobile number has 11",
    MOBILE_COUNT(2), MOBILE_COUNT(3), MOBILE_COUNT(4), MOBILE_COUNT(5), MOBILE_COUNT(6),
    MOBILE_COUNT(7), MOBILE_COUNT(8), MOBILE_COUNT(9), MOBILE_COUNT(10), MOBILE_COUNT(11),
    MOBILE_COUNT(12), MOBILE_COUNT(13), MOBILE_COUNT(14), MOBILE_COUNT(15), MOBILE_COUNT(16),
    MOBILE_COUNT(17), MOBILE_COUNT(18), MOBILE_COUNT(19), MOBILE_COUNT(20)
};

static const char WHY_EMPTY[] = "phone number is empty";
static const char WHY_NO_DIGITS[] = "phone number has no digits";
static const char WHY_TOO_MANY[] = "phone number has more than 20 digits";
static const char WHY_PLUS[] = "'+' is allowed only at the start of a phone number";
static const char WHY_NUL[] = "phone number contains a NUL byte";
static const char WHY_CTRL[] = "phone number contains a control character";
static const char WHY_FULLWIDTH[] =
    "phone number contains a full-width digit; use the ASCII digits 0-9";
static const char WHY_NONASCII[] = "phone number contains a non-ASCII character";
static const char WHY_INTL_EMPTY[] = "phone number has no digits after the international prefix";
static const char WHY_CC_ZERO[] = "a country code cannot start with 0";
static const char WHY_86_EMPTY[] = "phone number has no digits after the country code 86";
static const char WHY_MOBILE_PREFIX[] = "a Chinese mobile number starts with 13 to 19";
static const char WHY_AREA[] =
    "invalid Chinese area code (Beijing is 010, others are 02x or 0[3-9]xx)";
static const char WHY_SERVICE[] =
    "400 and 800 service numbers cannot be used; give a mobile or landline number";
static const char WHY_LAND_SHORT[] = "phone number is too short for a Chinese landline number";
static const char WHY_SUB_LEN[] =
    "a Chinese landline number has 7 or 8 digits after the area code";
static const char WHY_SUB_FIRST[] =
    "a Chinese landline subscriber number cannot start with 0 or 1";
static const char WHY_NO_TRUNK[] =
    "a Chinese landline number starts with 0 and its area code (e.g. 0755-28000123)";
static const char WHY_86_REST[] =
    "phone number starts with 86 but the rest is not a valid Chinese mobile or landline number";
static const char WHY_SHORT[] = "phone number is too short (fewer than 4 digits after the country code)";
static const char WHY_LONG[] =
    "phone number is too long (E.164 allows 15 digits including the country code)";
static const char WHY_DEFAULT_CC[] = "default country code is not a valid country code";
static const char WHY_OUTSZ[] = "output buffer too small for a phone number";

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
static int collect(const char *s, size_t len, digits_t *dg, const char **why)
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
            if (dg->plus || seen > 0) {
                *why = WHY_PLUS;
                return -1;
            }
            dg->plus = 1;
        } else if (c == 0) {
            *why = WHY_NUL;
            return -1;
        } else if (c < 0x20 || c == 0x7f) {
            *why = WHY_CTRL;
            return -1;
        } else if (c >= 0x80) {
            /* U+FF10..U+FF19 (full-width digits) are EF BC 90..99 in UTF-8 */
            if (c == 0xEF && i + 2 < len && (unsigned char)s[i + 1] == 0xBC
                && (unsigned char)s[i + 2] >= 0x90 && (unsigned char)s[i + 2] <= 0x99)
                *why = WHY_FULLWIDTH;
            else
                *why = WHY_NONASCII;
            return -1;
        } else {
            *why = bad_char_why[c] ? bad_char_why[c] : WHY_NONASCII;
            return -1;
        }
    }
    if (seen > MAX_DIGITS) {
        *why = WHY_TOO_MANY;
        return -1;
    }
    dg->n = seen;
    if (seen == 0) {
        *why = blank ? WHY_EMPTY : WHY_NO_DIGITS;
        return -1;
    }
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
static int china_landline(const char *p, size_t m, const char **why)
{
    size_t alen;
    size_t sub;

    if (p[0] == '1') {
        if (m < 2 || p[1] != '0') {
            *why = m < 2 ? WHY_LAND_SHORT : WHY_AREA;
            return -1;
        }
        alen = 2;
    } else if (p[0] == '2') {
        alen = 2;
    } else if (p[0] >= '3' && p[0] <= '9') {
        alen = 3;
        if (is_service(p, m)) {
            *why = WHY_SERVICE;
            return -1;
        }
    } else {
        *why = WHY_AREA;
        return -1;
    }
    if (m <= alen) {
        *why = WHY_LAND_SHORT;
        return -1;
    }
    sub = m - alen;
    if (sub < 7 || sub > 8) {
        *why = WHY_SUB_LEN;
        return -1;
    }
    if (p[alen] == '0' || p[alen] == '1') {
        *why = WHY_SUB_FIRST;
        return -1;
    }
    return 0;
}

static int china_mobile(const char *p, size_t m, const char **why)
{
    if (m != 11) {
        *why = mobile_count_why[m];
        return -1;
    }
    if (p[1] < '3' || p[1] > '9') {
        *why = WHY_MOBILE_PREFIX;
        return -1;
    }
    return 0;
}

/* A national number written without the trunk 0: a mobile, or area code + subscriber. */
static int china_no_trunk(const char *p, size_t m, const char **why)
{
    if (p[0] == '1' && !(m >= 2 && p[1] == '0'))
        return china_mobile(p, m, why);
    return china_landline(p, m, why);
}

/* The national part after "+86" / "0086": a trunk 0 is tolerated and dropped. */
static int china_after_cc(const char **pp, size_t *mp, const char **why)
{
    if (*mp > 0 && (*pp)[0] == '0') {
        (*pp)++;
        (*mp)--;
    }
    if (*mp == 0) {
        *why = WHY_86_EMPTY;
        return -1;
    }
    return china_no_trunk(*pp, *mp, why);
}

/* A number given without an international prefix, default country 86. */
static int china_national(const char **pp, size_t *mp, const char **why)
{
    const char *p = *pp;
    size_t m = *mp;
    const char *ignored;

    if (p[0] == '1')
        return china_mobile(p, m, why);   /* 11 digits starting with 1: always a mobile */
    if (p[0] == '0') {
        if (m < 2) {
            *why = WHY_LAND_SHORT;
            return -1;
        }
        (*pp)++;
        (*mp)--;
        return china_landline(p + 1, m - 1, why);
    }
    if (m > 2 && p[0] == '8' && p[1] == '6' && china_no_trunk(p + 2, m - 2, &ignored) == 0) {
        *pp += 2;
        *mp -= 2;
        return 0;
    }
    if (is_service(p, m)) {
        *why = WHY_SERVICE;
        return -1;
    }
    *why = (m > 2 && p[0] == '8' && p[1] == '6') ? WHY_86_REST : WHY_NO_TRUNK;
    return -1;
}

/* ---------------------------------------------------------------------------------------
 * Entry point
 * ------------------------------------------------------------------------------------- */

static int other_country(size_t cclen, size_t m, const char **why)
{
    if (m < 4) {
        *why = WHY_SHORT;
        return -1;
    }
    if (m > 14 || cclen + m > E164_MAX) {
        *why = WHY_LONG;
        return -1;
    }
    return 0;
}

static int emit(const char *cc, size_t cclen, const char *nat, size_t m, char *out,
                size_t outsz, const char **why)
{
    size_t need = 1 + cclen + m + 1;

    if (out == NULL || outsz < need || need > CTC_PHONE_MAX) {
        *why = WHY_OUTSZ;
        return -1;
    }
    out[0] = '+';
    memcpy(out + 1, cc, cclen);
    memcpy(out + 1 + cclen, nat, m);
    out[1 + cclen + m] = '\0';
    return 0;
}

int ctc_phone_normalize(const char *s, size_t len, const char *cc, size_t cclen,
                        char *out, size_t outsz, const char **why)
{
    digits_t dg;
    const char *dummy;
    const char *p;
    size_t m;
    size_t i;

    if (why == NULL)
        why = &dummy;
    if (out != NULL && outsz > 0)
        out[0] = '\0';
    if (s == NULL)
        len = 0;
    if (collect(s, len, &dg, why) != 0)
        return -1;

    if (dg.plus || (dg.n >= 2 && dg.d[0] == '0' && dg.d[1] == '0')) {
        /* International: "+CC..." or "00CC..." */
        size_t ccl;
        p = dg.d + (dg.plus ? 0 : 2);
        m = dg.n - (dg.plus ? 0 : 2);
        if (m == 0) {
            *why = WHY_INTL_EMPTY;
            return -1;
        }
        if (p[0] == '0') {
            *why = WHY_CC_ZERO;
            return -1;
        }
        ccl = cc_length(p, m);
        if (ccl == 2 && m >= 2 && p[0] == '8' && p[1] == '6') {
            const char *nat = p + 2;
            size_t nm = m - 2;
            if (china_after_cc(&nat, &nm, why) != 0)
                return -1;
            return emit("86", 2, nat, nm, out, outsz, why);
        }
        if (m < ccl) {
            *why = WHY_SHORT;
            return -1;
        }
        if (other_country(ccl, m - ccl, why) != 0)
            return -1;
        return emit(p, ccl, p + ccl, m - ccl, out, outsz, why);
    }

    /* National: use the default country code */
    if (cc != NULL && cclen > 0 && cc[0] == '+') {
        cc++;
        cclen--;
    }
    if (cc == NULL || cclen == 0 || cclen > 3 || cc[0] == '0') {
        *why = WHY_DEFAULT_CC;
        return -1;
    }
    for (i = 0; i < cclen; i++) {
        if (cc[i] < '0' || cc[i] > '9') {
            *why = WHY_DEFAULT_CC;
            return -1;
        }
    }
    if (cc_length(cc, cclen) != cclen) {
        *why = WHY_DEFAULT_CC;
        return -1;
    }
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
