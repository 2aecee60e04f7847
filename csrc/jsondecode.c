/*
 * A direct JSON decoder for the provider's answers (see ctc_json_decode in parsers.h). One pass
 * over the body pushes the Lua value lua-cjson 2.1.0 gives (decode_invalid_numbers off,
 * decode_max_depth 64), and refuses what it refuses, saying what is wrong and at which byte; the
 * elements of the top-level "data" array that are objects (records) are finished on the way: null
 * fields absent, whole numbers integers on 5.3+, the id read from its own bytes by the id rule.
 *
 * What cjson does, and so what this does: whitespace is space, tab, LF, CR; a NUL byte outside a
 * string ends the input (a Lua string may hold more); inside a string a NUL ends it unterminated,
 * any other byte (control characters, invalid UTF-8) is taken as it is; \u escapes
 * become UTF-8, a surrogate pair one 4-byte sequence, a lone or reversed surrogate is refused;
 * numbers are what strtod reads from a '-' or a digit (so "5.", "-.5", "1.e3" are numbers), except
 * a leading zero before a digit, hex, inf and nan; duplicate keys: the last wins.
 * Where it is not cjson (none of it visible in a value or a decision): no copy of the body per
 * call (cjson mallocs one as long as the body), its own messages (a reason and a 0-based byte
 * offset), and a record's keys are taken from the record before when the bytes are the same.
 * Speed: tables pre-sized (a record as large as the one before, the data array a full page),
 * strings without escapes pushed straight from the body, integers of up to 15 digits and short
 * decimals computed exactly without strtod.
 * Memory: no malloc; the one scratch buffer (strings with escapes, long numbers) is a userdata on
 * the Lua stack, so a memory error raised by any push frees everything; the whole decode runs
 * under lua_pcall, so such an error is a refusal, as it was with cjson. Recursion is bounded by
 * the depth limit; offsets are size_t.
 */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ctc.h"
#include "parsers.h"
#include "jsonchar.h"

enum { M_PLAIN, M_TOP, M_RECORD };

#define KEYS 32 /* record keys kept for reuse (by member position) */
#define REC_HINT_MAX 64 /* the largest hash a record is created with before it is read */

typedef struct {
    lua_State *L;
    const unsigned char *b; /* b[len] is '\0' */
    size_t len;
    size_t p;
    int depth;
    int slot;               /* stack index of the scratch userdata (nil until needed) */
    unsigned char *buf;
    size_t cap;
    int rec_hint;           /* hash size for the next record: the last record's member count */
    /* the keys of the records' first KEYS members, as last seen (records share a shape): the
     * Lua string at stack index keys + i, its bytes at b + koff[i] (keys without escapes only) */
    int keys;
    size_t koff[KEYS];
    size_t klen[KEYS];
    ctc_json_page *page;
    int64_t prev;           /* the page's last id so far (or the cursor asked) */
    const char *why;        /* the failure: what, and where (0-based byte offset) */
    size_t at;
} dctx;

static const char E_VALUE[] = "expected a value";
static const char E_KEY[] = "expected a string as object key";
static const char E_COLON[] = "expected ':' after an object key";
static const char E_OBJECT[] = "expected ',' or '}' in an object";
static const char E_ARRAY[] = "expected ',' or ']' in an array";
static const char E_END[] = "expected the end after the value";
static const char E_UNTERMINATED[] = "unterminated string";
static const char E_ESCAPE[] = "invalid escape in a string";
static const char E_UNICODE[] = "invalid \\u escape (4 hex digits, surrogates paired)";
static const char E_NUMBER[] = "invalid number";
#define STR_(x) #x
#define STR(x) STR_(x)
static const char E_DEPTH[] = "nesting deeper than " STR(CTC_JSON_MAX_DEPTH);
static const char E_UTF16[] = "UTF-16 or UTF-32 (a NUL byte)";

/* bytes that end the plain run of a string: '"', '\\', NUL */
static const unsigned char STR_STOP[256] = { [0] = 1, ['"'] = 1, ['\\'] = 1 };

static size_t skip_ws(const unsigned char *b, size_t p)
{
    while (ctc_json_is_ws(b[p]))
        p++;
    return p;
}

static int fail_at(dctx *c, const char *why, size_t at)
{
    c->why = why;
    c->at = at;
    return -1;
}

typedef struct {
    size_t end;      /* offset after the token */
    int plain;       /* no sign, fraction or exponent: [0-9]+ */
    int digits;      /* digits before and after the point */
    int frac;        /* digits after the point */
    long exp;        /* the exponent's value (saturated) */
    uint64_t mant;   /* the first 19 digits as an integer */
} numtok;

/* The number at b[s] ('-' or a digit) by strtod's decimal grammar after cjson's checks:
 * -?(D+(.D*)?|.D+)([eE][+-]?D+)?, no leading zero before a digit, no hex. 0, or -1. */
static int lex_number(const unsigned char *b, size_t s, numtok *t)
{
    size_t p = s;
    int neg = b[p] == '-';

    t->plain = !neg;
    t->digits = 0;
    t->frac = 0;
    t->exp = 0;
    t->mant = 0;
    if (neg)
        p++;
    if (b[p] == '0' && (ctc_json_is_digit(b[p + 1]) || (b[p + 1] | 0x20) == 'x'))
        return -1;
    while (ctc_json_is_digit(b[p])) {
        if (t->digits < 19)
            t->mant = t->mant * 10 + (uint64_t)(b[p] - '0');
        t->digits++;
        p++;
    }
    if (b[p] == '.') {
        p++;
        t->plain = 0;
        while (ctc_json_is_digit(b[p])) {
            if (t->digits < 19)
                t->mant = t->mant * 10 + (uint64_t)(b[p] - '0');
            t->digits++;
            t->frac++;
            p++;
        }
    }
    if (t->digits == 0)
        return -1;
    if ((b[p] | 0x20) == 'e') {
        size_t q = p + 1;
        int eneg = 0;
        if (b[q] == '+' || b[q] == '-')
            eneg = b[q++] == '-';
        if (ctc_json_is_digit(b[q])) {
            long e = 0;
            while (ctc_json_is_digit(b[q])) {
                if (e < 100000)
                    e = e * 10 + (b[q] - '0');
                q++;
            }
            t->exp = eneg ? -e : e;
            t->plain = 0;
            p = q;
        }
    }
    t->end = p;
    return 0;
}

/* ---- values ---- */

/* the scratch buffer, at least need bytes (its old contents are not kept) */
static unsigned char *scratch(dctx *c, size_t need)
{
    if (need > c->cap) {
        size_t cap = c->cap * 2 > need ? c->cap * 2 : need;
        if (cap < 256)
            cap = 256;
        c->buf = ctc_newuserdata(c->L, cap);
        lua_replace(c->L, c->slot);
        c->cap = cap;
    }
    return c->buf;
}

static size_t put_utf8(unsigned char *o, long cp)
{
    if (cp <= 0x7F) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp <= 0x7FF) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp <= 0xFFFF) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The rest of a string from its first backslash at q (contents start at s): decoded into the
 * scratch buffer, pushed; *sp, *sn: the decoded bytes (valid until the scratch is used again). */
static int push_escaped(dctx *c, size_t s, size_t q, const char **sp, size_t *sn)
{
    const unsigned char *b = c->b;
    size_t e = q, k;
    unsigned char *o;

    /* an upper bound of the decoded length: the raw bytes up to the closing quote (or a NUL) */
    while (b[e] != '"' && b[e] != 0)
        e += (b[e] == '\\' && b[e + 1] != 0) ? 2 : 1;
    o = scratch(c, e - s + 1);
    memcpy(o, b + s, q - s);
    k = q - s;
    for (;;) {
        unsigned char ch = b[q];
        if (ch == '"')
            break;
        if (ch == 0)
            return fail_at(c, E_UNTERMINATED, q);
        if (ch != '\\') {
            o[k++] = ch;
            q++;
            continue;
        }
        switch (b[q + 1]) {
        case '"': o[k++] = '"'; break;
        case '\\': o[k++] = '\\'; break;
        case '/': o[k++] = '/'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 't': o[k++] = '\t'; break;
        case 'u': {
            long cp = ctc_json_hex4(b, q + 2);
            if (cp < 0)
                return fail_at(c, E_UNICODE, q);
            if ((cp & 0xF800) == 0xD800) {
                long lo;
                /* a low surrogate first, or a high one not followed by \u and a low one */
                if ((cp & 0x400) || b[q + 6] != '\\' || b[q + 7] != 'u')
                    return fail_at(c, E_UNICODE, q);
                lo = ctc_json_hex4(b, q + 8);
                if (lo < 0 || (lo & 0xFC00) != 0xDC00)
                    return fail_at(c, E_UNICODE, q);
                cp = ((((cp & 0x3FF) << 10) | (lo & 0x3FF)) + 0x10000);
                q += 6;
            }
            k += put_utf8(o + k, cp);
            q += 6;
            continue;
        }
        default:
            return fail_at(c, E_ESCAPE, q);
        }
        q += 2;
    }
    lua_pushlstring(c->L, (const char *)o, k);
    c->p = q + 1;
    *sp = (const char *)o;
    *sn = k;
    return 0;
}

/* c->p at '"': pushes the string; *sp, *sn its bytes (in the body, or the scratch buffer) */
static int push_string(dctx *c, const char **sp, size_t *sn)
{
    const unsigned char *b = c->b;
    size_t s = c->p + 1, q = s;

    while (!STR_STOP[b[q]])
        q++;
    if (b[q] == '"') {
        lua_pushlstring(c->L, (const char *)b + s, q - s);
        c->p = q + 1;
        *sp = (const char *)b + s;
        *sn = q - s;
        return 0;
    }
    if (b[q] == 0)
        return fail_at(c, E_UNTERMINATED, q);
    return push_escaped(c, s, q, sp, sn);
}

/* A record's key at c->p ('"'), member i: the string the record before had there when the
 * bytes are the same (no hashing, no interning), else as push_string, kept for the next one */
static int push_record_key(dctx *c, int i, const char **sp, size_t *sn)
{
    const unsigned char *b = c->b;
    size_t s = c->p + 1, q = s;

    if (i >= KEYS)
        return push_string(c, sp, sn);
    if (c->koff[i] != 0) {
        /* the kept key holds no '"', '\\' or NUL: the same bytes then '"' are the same key
         * (and the comparison stops at the body's NUL at the latest) */
        const unsigned char *k = b + c->koff[i];
        size_t j = 0, n = c->klen[i];
        while (j < n && b[s + j] == k[j])
            j++;
        if (j == n && b[s + n] == '"') {
            lua_pushvalue(c->L, c->keys + i);
            c->p = s + n + 1;
            *sp = (const char *)b + s;
            *sn = n;
            return 0;
        }
    }
    while (!STR_STOP[b[q]])
        q++;
    if (b[q] != '"')
        return push_string(c, sp, sn);
    lua_pushlstring(c->L, (const char *)b + s, q - s);
    lua_pushvalue(c->L, -1);
    lua_replace(c->L, c->keys + i);
    c->koff[i] = s;
    c->klen[i] = q - s;
    c->p = q + 1;
    *sp = (const char *)b + s;
    *sn = q - s;
    return 0;
}

static const double POW10[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

/* the token's value as strtod gives it: exactly computed when the digits and the power of ten
 * are both exact doubles (one correctly rounded operation), else strtod on a NUL-terminated
 * copy with the locale's decimal point */
static double number_value(dctx *c, size_t s, const numtok *t)
{
    const unsigned char *b = c->b;
    size_t n = t->end - s, i, k = 0;
    const char *dp;
    size_t dpn;
    char *o;

    if (t->digits <= 15) {
        long e10 = t->exp - t->frac;
        if (t->mant == 0 || (e10 >= -22 && e10 <= 22)) {
            double d = (double)t->mant;
            if (t->mant != 0)
                d = e10 >= 0 ? d * POW10[e10] : d / POW10[-e10];
            return b[s] == '-' ? -d : d;
        }
    }
    dp = localeconv()->decimal_point;
    dpn = strlen(dp);
    o = (char *)scratch(c, n + dpn + 1);
    for (i = 0; i < n; i++) {
        if (b[s + i] == '.') {
            memcpy(o + k, dp, dpn);
            k += dpn;
        } else {
            o[k++] = (char)b[s + i];
        }
    }
    o[k] = '\0';
    return strtod(o, NULL);
}

static int value(dctx *c, int mode);

/* a number at c->p; in a record (field), a whole one below 2^53 as an integer on 5.3+ */
static int push_number(dctx *c, int field)
{
    numtok t;
    size_t s = c->p;

    if (lex_number(c->b, s, &t) != 0)
        return fail_at(c, E_NUMBER, s);
    c->p = t.end;
#if CTC_HAS_INTEGERS
    if (field) {
        double d;
        if (t.plain && t.digits <= 15) {
            lua_pushinteger(c->L, (lua_Integer)t.mant);
            return 0;
        }
        d = number_value(c, s, &t);
        if (d == floor(d) && fabs(d) < CTC_EXACT_DOUBLE_MAX)
            lua_pushinteger(c->L, (lua_Integer)d);
        else
            lua_pushnumber(c->L, d);
        return 0;
    }
#else
    (void)field;
#endif
    lua_pushnumber(c->L, number_value(c, s, &t));
    return 0;
}

/* a record's "id" at c->p: pushed exactly by the id rule when it is one (CTC_ID_INT), else as
 * any field; returns the kind, or -1 on a JSON error */
static int push_id(dctx *c, int64_t *id)
{
    const unsigned char *b = c->b;
    size_t s = c->p;

    if (ctc_json_is_digit(b[s])) {
        numtok t;
        if (lex_number(b, s, &t) != 0)
            return fail_at(c, E_NUMBER, s);
        if (t.plain && t.digits <= 19 && t.mant <= (uint64_t)INT64_MAX) {
            c->p = t.end;
            *id = (int64_t)t.mant;
            ctc_push_id(c->L, *id);
            return CTC_ID_INT;
        }
        return push_number(c, 1) == 0 ? CTC_ID_OTHER : -1;
    }
    if (b[s] == '"') {
        const char *sp;
        size_t sn, i;
        uint64_t v = 0;
        if (push_string(c, &sp, &sn) != 0)
            return -1;
        if (sn == 0 || sn > 19)
            return CTC_ID_OTHER;
        for (i = 0; i < sn; i++) {
            if (!ctc_json_is_digit((unsigned char)sp[i]))
                return CTC_ID_OTHER;
            v = v * 10 + (uint64_t)(sp[i] - '0');
        }
        if (v > (uint64_t)INT64_MAX)
            return CTC_ID_OTHER;
        lua_pop(c->L, 1);
        *id = (int64_t)v;
        ctc_push_id(c->L, *id);
        return CTC_ID_INT;
    }
    if (b[s] == '-')
        return push_number(c, 1) == 0 ? CTC_ID_OTHER : -1;
    return value(c, M_PLAIN) == 0 ? CTC_ID_OTHER : -1;
}

static int descend(dctx *c, size_t bracket)
{
    if (++c->depth > CTC_JSON_MAX_DEPTH)
        return fail_at(c, E_DEPTH, bracket);
    return 0;
}

/* a record just read: its id kind, in page order */
static void page_record(dctx *c, int kind, int64_t id)
{
    ctc_json_page *pg = c->page;
    size_t index = ++pg->count;
    if (kind != CTC_ID_INT) {
        if (pg->bad_index == 0) {
            pg->bad_index = index;
            pg->bad_kind = kind;
        }
        return;
    }
    if (pg->stall_index == 0 && id <= c->prev) {
        pg->stall_index = index;
        pg->stall_id = id;
        pg->stall_prev = c->prev;
    }
    c->prev = id;
    pg->last_id = id;
}

static int array(dctx *c, int records);

/* c->p at '{'. mode M_TOP: the top-level object ("data" is looked for); M_RECORD: an element of
 * the data array. */
static int object(dctx *c, int mode)
{
    lua_State *L = c->L;
    const unsigned char *b = c->b;
    int kind = CTC_ID_MISSING, members = 0;
    int64_t id = 0;

    if (descend(c, c->p) != 0)
        return -1;
    lua_createtable(L, 0, mode == M_RECORD ? c->rec_hint : 0);
    c->p = skip_ws(b, c->p + 1);
    if (b[c->p] == '}') {
        c->p++;
        goto done;
    }
    for (;;) {
        const char *k;
        size_t kn;
        if (b[c->p] != '"')
            return fail_at(c, E_KEY, c->p);
        if (mode == M_RECORD ? push_record_key(c, members, &k, &kn) != 0
                             : push_string(c, &k, &kn) != 0)
            return -1;
        c->p = skip_ws(b, c->p);
        if (b[c->p] != ':')
            return fail_at(c, E_COLON, c->p);
        c->p = skip_ws(b, c->p + 1);
        members++;
        if (mode == M_RECORD) {
            if (kn == 2 && k[0] == 'i' && k[1] == 'd') {
                id = 0;
                kind = push_id(c, &id);
                if (kind < 0)
                    return -1;
            } else if (b[c->p] == 'n' && strncmp((const char *)b + c->p, "null", 4) == 0) {
                c->p += 4;
                lua_pushnil(L); /* a null field is absent (and clears an earlier one) */
            } else if (b[c->p] == '-' || ctc_json_is_digit(b[c->p])) {
                if (push_number(c, 1) != 0)
                    return -1;
            } else if (value(c, M_PLAIN) != 0) {
                return -1;
            }
        } else if (mode == M_TOP && kn == 4 && memcmp(k, "data", 4) == 0) {
            /* the last "data" member is the page */
            ctc_json_page *pg = c->page;
            pg->found = 0;
            pg->count = 0;
            pg->bad_index = 0;
            pg->bad_kind = CTC_ID_INT;
            pg->stall_index = 0;
            pg->last_id = 0;
            c->prev = pg->asked;
            if (b[c->p] == '[') {
                if (array(c, 1) != 0)
                    return -1;
                pg->found = 1;
            } else if (value(c, M_PLAIN) != 0) {
                return -1;
            }
        } else if (value(c, M_PLAIN) != 0) {
            return -1;
        }
        lua_rawset(L, -3);
        c->p = skip_ws(b, c->p);
        if (b[c->p] == ',') {
            c->p = skip_ws(b, c->p + 1);
            continue;
        }
        if (b[c->p] != '}')
            return fail_at(c, E_OBJECT, c->p);
        c->p++;
        break;
    }
done:
    c->depth--;
    if (mode == M_RECORD) {
        /* capped: a huge record must not make the small one after it allocate as much */
        c->rec_hint = members < REC_HINT_MAX ? members : REC_HINT_MAX;
        page_record(c, kind, id);
    }
    return 0;
}

/* c->p at '['. records: the data array (its objects are records) */
static int array(dctx *c, int records)
{
    lua_State *L = c->L;
    const unsigned char *b = c->b;
    lua_Integer i = 0;

    if (descend(c, c->p) != 0)
        return -1;
    lua_createtable(L, records ? CTC_PAGE_SIZE : 0, 0);
    c->p = skip_ws(b, c->p + 1);
    if (b[c->p] == ']') {
        c->p++;
        c->depth--;
        return 0;
    }
    for (;;) {
        if (records) {
            if (b[c->p] == '{') {
                if (object(c, M_RECORD) != 0)
                    return -1;
            } else {
                if (value(c, M_PLAIN) != 0)
                    return -1;
                page_record(c, CTC_ID_MISSING, 0);
            }
        } else if (value(c, M_PLAIN) != 0) {
            return -1;
        }
        lua_rawseti(L, -2, (int)++i);
        c->p = skip_ws(b, c->p);
        if (b[c->p] == ',') {
            c->p = skip_ws(b, c->p + 1);
            continue;
        }
        if (b[c->p] != ']')
            return fail_at(c, E_ARRAY, c->p);
        c->p++;
        break;
    }
    c->depth--;
    return 0;
}

/* c->p at the first byte of a value (blanks skipped): pushes it */
static int value(dctx *c, int mode)
{
    const unsigned char *b = c->b;
    const char *sp;
    size_t sn;

    switch (b[c->p]) {
    case '{':
        return object(c, mode);
    case '[':
        return array(c, 0);
    case '"':
        return push_string(c, &sp, &sn);
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        return push_number(c, 0);
    case 't':
        if (strncmp((const char *)b + c->p, "true", 4) != 0)
            break;
        c->p += 4;
        lua_pushboolean(c->L, 1);
        return 0;
    case 'f':
        if (strncmp((const char *)b + c->p, "false", 5) != 0)
            break;
        c->p += 5;
        lua_pushboolean(c->L, 0);
        return 0;
    case 'n':
        if (strncmp((const char *)b + c->p, "null", 4) != 0)
            break;
        c->p += 4;
        lua_pushlightuserdata(c->L, NULL); /* cjson.null */
        return 0;
    default:
        break;
    }
    return fail_at(c, E_VALUE, c->p);
}

typedef struct {
    const char *body;
    size_t len;
    ctc_json_page *page;
} decode_args;

/* under lua_pcall: [args lightuserdata] -> value, or nil and the message */
static int decode_protected(lua_State *L)
{
    decode_args *a = lua_touserdata(L, 1);
    dctx c;
    char at[CTC_I64_LEN];

    memset(&c, 0, sizeof c);
    c.L = L;
    c.b = (const unsigned char *)a->body;
    c.len = a->len;
    c.page = a->page;
    c.prev = a->page->asked;
    luaL_checkstack(L, 3 * CTC_JSON_MAX_DEPTH + KEYS + 8, "JSON nesting");
    lua_settop(L, lua_gettop(L) + KEYS + 1);
    c.keys = lua_gettop(L) - KEYS - 1 + 1;
    c.slot = lua_gettop(L);
    if (c.len >= 2 && (c.b[0] == 0 || c.b[1] == 0)) {
        fail_at(&c, E_UTF16, c.b[0] == 0 ? 0 : 1);
    } else {
        c.p = skip_ws(c.b, 0);
        if (value(&c, M_TOP) == 0) {
            c.p = skip_ws(c.b, c.p);
            if (c.b[c.p] == 0)
                return 1;
            fail_at(&c, E_END, c.p);
        }
    }
    lua_settop(L, c.slot);
    lua_pushnil(L);
    lua_pushfstring(L, "%s at byte offset %s", c.why, ctc_i64_str(at, (int64_t)c.at));
    return 2;
}

int ctc_json_decode(lua_State *L, const char *body, size_t len, ctc_json_page *page)
{
    decode_args a;
    int top = lua_gettop(L);

    a.body = body;
    a.len = len;
    a.page = page;
    page->found = 0;
    page->count = 0;
    page->bad_index = 0;
    page->bad_kind = CTC_ID_INT;
    page->stall_index = 0;
    page->last_id = 0;
    lua_pushcfunction(L, decode_protected);
    lua_pushlightuserdata(L, &a);
    if (lua_pcall(L, 1, 2, 0) != 0) {
        /* a memory error: the message is on top */
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return -1;
    }
    if (lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING) {
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}
