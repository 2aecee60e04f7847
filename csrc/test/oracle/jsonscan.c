/*
 * A validating JSON scanner for the provider's record pages. Pass 1 checks that the body is
 * one well-formed RFC 8259 value (iteratively, depth bounded by CTC_JSON_MAX_DEPTH) and notes
 * where the value of the last top-level "data" member starts. Pass 2 walks that array, which
 * is known to be valid by then, and reports each element's "id" once the element is complete,
 * so the last of duplicate "id" members wins, as with cjson. Both passes are O(len), allocate
 * nothing and never read past len. The records reader (response.c) reads pages with the direct
 * decoder (jsondecode.c), which applies the same id rule as it decodes; this scanner, test-only,
 * is the reference the parser tests and fuzzers hold it to.
 */
#include <string.h>
#include "jsonscan.h"
#include "../../jsonchar.h"

#define NONE ((size_t)-1)

static const char WHY_EMPTY[] = "invalid JSON: empty document";
static const char WHY_EOF[] = "invalid JSON: unexpected end of input";
static const char WHY_UNTERMINATED[] = "invalid JSON: unterminated string";
static const char WHY_ESCAPE[] = "invalid JSON: invalid escape in string";
static const char WHY_UESCAPE[] = "invalid JSON: \\u must be followed by 4 hex digits";
static const char WHY_SURROGATE[] = "invalid JSON: unpaired UTF-16 surrogate in \\u escape";
static const char WHY_CTRL[] = "invalid JSON: unescaped control character in string";
static const char WHY_NUMBER[] = "invalid JSON: invalid number";
static const char WHY_LITERAL[] = "invalid JSON: invalid literal (expected true, false or null)";
static const char WHY_CHAR[] = "invalid JSON: unexpected character";
static const char WHY_KEY[] = "invalid JSON: object key must be a string";
static const char WHY_COLON[] = "invalid JSON: expected ':' after object key";
static const char WHY_OBJ_SEP[] = "invalid JSON: expected ',' or '}' in object";
static const char WHY_ARR_SEP[] = "invalid JSON: expected ',' or ']' in array";
static const char WHY_DEPTH[] = "invalid JSON: nesting deeper than 64 levels";
static const char WHY_TRAILING[] = "invalid JSON: trailing characters after the value";
static const char WHY_INTERNAL[] = "invalid JSON: scanner inconsistency";

typedef struct {
    const unsigned char *b;
    size_t len;
    size_t p;
    const char *why;
    size_t erroff;
} jctx;

static int fail(jctx *c, const char *why, size_t off)
{
    c->why = why;
    c->erroff = off;
    return -1;
}

static void skip_ws(jctx *c)
{
    while (c->p < c->len && ctc_json_is_ws(c->b[c->p]))
        c->p++;
}

/* ---------------------------------------------------------------------------------------
 * Decoding string contents (already validated) one code point at a time
 * ------------------------------------------------------------------------------------- */

/* Next code point of the raw string contents s[*i..n); -1 at the end or on bad input
 * (which pass 1 has excluded). Bytes >= 0x80 come back as themselves: callers only
 * compare against ASCII, so a non-ASCII byte simply never matches. */
static long next_cp(const unsigned char *s, size_t n, size_t *i)
{
    unsigned char ch;

    if (*i >= n)
        return -1;
    ch = s[*i];
    if (ch != '\\') {
        (*i)++;
        return ch;
    }
    if (*i + 1 >= n)
        return -1;
    ch = s[*i + 1];
    *i += 2;
    switch (ch) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': {
        long v;
        if (*i + 4 > n)
            return -1;
        v = ctc_json_hex4(s, *i);
        *i += 4;
        if (v >= 0xD800 && v <= 0xDBFF) {
            long lo;
            if (*i + 6 > n || s[*i] != '\\' || s[*i + 1] != 'u')
                return -1;
            lo = ctc_json_hex4(s, *i + 2);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            *i += 6;
            return 0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00);
        }
        return v;
    }
    default:
        return -1;
    }
}

/* Whether the raw string contents s[0..n) decode to the ASCII literal lit. */
static int str_equals(const unsigned char *s, size_t n, const char *lit)
{
    size_t i = 0;
    size_t k = 0;

    while (i < n) {
        long cp = next_cp(s, n, &i);
        if (cp < 0 || lit[k] == '\0' || cp != (unsigned char)lit[k])
            return 0;
        k++;
    }
    return lit[k] == '\0';
}

/* ---------------------------------------------------------------------------------------
 * Pass 1: validation
 * ------------------------------------------------------------------------------------- */

/* c->p at '"'. Validates the string, sets [*cs, *ce) to its raw contents and moves past it. */
static int scan_string(jctx *c, size_t *cs, size_t *ce)
{
    size_t open = c->p;
    size_t q = c->p + 1;
    const unsigned char *b = c->b;
    size_t len = c->len;

    for (;;) {
        unsigned char ch;
        if (q >= len)
            return fail(c, WHY_UNTERMINATED, open);
        ch = b[q];
        if (ch == '"')
            break;
        if (ch < 0x20)
            return fail(c, WHY_CTRL, q);
        if (ch != '\\') {
            q++;
            continue;
        }
        if (q + 1 >= len)
            return fail(c, WHY_UNTERMINATED, open);
        ch = b[q + 1];
        if (ch == '"' || ch == '\\' || ch == '/' || ch == 'b' || ch == 'f' || ch == 'n'
            || ch == 'r' || ch == 't') {
            q += 2;
        } else if (ch == 'u') {
            long v;
            if (q + 6 > len)
                return fail(c, WHY_UNTERMINATED, open);
            v = ctc_json_hex4(b, q + 2);
            if (v < 0)
                return fail(c, WHY_UESCAPE, q);
            if (v >= 0xDC00 && v <= 0xDFFF)
                return fail(c, WHY_SURROGATE, q);
            if (v >= 0xD800 && v <= 0xDBFF) {
                long lo;
                if (q + 12 > len) {
                    if (q + 6 < len && b[q + 6] != '\\')
                        return fail(c, WHY_SURROGATE, q);
                    return fail(c, WHY_UNTERMINATED, open);
                }
                if (b[q + 6] != '\\' || b[q + 7] != 'u')
                    return fail(c, WHY_SURROGATE, q);
                lo = ctc_json_hex4(b, q + 8);
                if (lo < 0)
                    return fail(c, WHY_UESCAPE, q + 6);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return fail(c, WHY_SURROGATE, q);
                q += 12;
            } else {
                q += 6;
            }
        } else {
            return fail(c, WHY_ESCAPE, q);
        }
    }
    *cs = open + 1;
    *ce = q;
    c->p = q + 1;
    return 0;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(jctx *c)
{
    const unsigned char *b = c->b;
    size_t len = c->len;
    size_t start = c->p;
    size_t q = c->p;

    if (q < len && b[q] == '-')
        q++;
    if (q >= len || !ctc_json_is_digit(b[q]))
        return fail(c, WHY_NUMBER, start);
    if (b[q] == '0') {
        q++;
    } else {
        while (q < len && ctc_json_is_digit(b[q]))
            q++;
    }
    if (q < len && b[q] == '.') {
        q++;
        if (q >= len || !ctc_json_is_digit(b[q]))
            return fail(c, WHY_NUMBER, start);
        while (q < len && ctc_json_is_digit(b[q]))
            q++;
    }
    if (q < len && (b[q] == 'e' || b[q] == 'E')) {
        q++;
        if (q < len && (b[q] == '+' || b[q] == '-'))
            q++;
        if (q >= len || !ctc_json_is_digit(b[q]))
            return fail(c, WHY_NUMBER, start);
        while (q < len && ctc_json_is_digit(b[q]))
            q++;
    }
    /* "01", "1a": the next byte cannot continue a value; pass it on as unexpected */
    c->p = q;
    return 0;
}

static int scan_literal(jctx *c)
{
    static const char *const lits[3] = { "true", "false", "null" };
    const char *lit;
    size_t i;

    switch (c->b[c->p]) {
    case 't': lit = lits[0]; break;
    case 'f': lit = lits[1]; break;
    default: lit = lits[2]; break;
    }
    for (i = 0; lit[i] != '\0'; i++) {
        if (c->p + i >= c->len)
            return fail(c, WHY_EOF, c->len);
        if (c->b[c->p + i] != (unsigned char)lit[i])
            return fail(c, WHY_LITERAL, c->p);
    }
    c->p += i;
    return 0;
}

/* Validates the whole document; *data_off is the offset of the '[' of the value of the
 * last top-level "data" member when that value is an array, else NONE. */
static int validate(jctx *c, size_t *data_off)
{
    unsigned char stack[CTC_JSON_MAX_DEPTH];    /* '{' or '[' per open container */
    size_t depth = 0;
    size_t cs, ce;
    int key_is_data = 0;

    *data_off = NONE;
    skip_ws(c);
    if (c->p >= c->len)
        return fail(c, WHY_EMPTY, c->p);

value:
    skip_ws(c);
    if (c->p >= c->len)
        return fail(c, WHY_EOF, c->len);
    if (depth == 1 && stack[0] == '{') {
        /* the value of a top-level member: remember where "data" starts */
        if (key_is_data)
            *data_off = c->b[c->p] == '[' ? c->p : NONE;
        key_is_data = 0;
    }
    switch (c->b[c->p]) {
    case '{':
    case '[':
        if (depth >= CTC_JSON_MAX_DEPTH)
            return fail(c, WHY_DEPTH, c->p);
        stack[depth++] = c->b[c->p];
        c->p++;
        skip_ws(c);
        if (c->p >= c->len)
            return fail(c, WHY_EOF, c->len);
        if (stack[depth - 1] == '{') {
            if (c->b[c->p] == '}') {
                c->p++;
                depth--;
                goto after;
            }
            goto key;
        }
        if (c->b[c->p] == ']') {
            c->p++;
            depth--;
            goto after;
        }
        goto value;
    case '"':
        if (scan_string(c, &cs, &ce))
            return -1;
        goto after;
    case '-': case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
        if (scan_number(c))
            return -1;
        goto after;
    case 't':
    case 'f':
    case 'n':
        if (scan_literal(c))
            return -1;
        goto after;
    default:
        return fail(c, WHY_CHAR, c->p);
    }

key:
    /* c->p at the first non-blank byte after '{' or ',' in an object */
    skip_ws(c);
    if (c->p >= c->len)
        return fail(c, WHY_EOF, c->len);
    if (c->b[c->p] != '"')
        return fail(c, WHY_KEY, c->p);
    if (scan_string(c, &cs, &ce))
        return -1;
    if (depth == 1)
        key_is_data = str_equals(c->b + cs, ce - cs, "data");
    skip_ws(c);
    if (c->p >= c->len)
        return fail(c, WHY_EOF, c->len);
    if (c->b[c->p] != ':')
        return fail(c, WHY_COLON, c->p);
    c->p++;
    goto value;

after:
    skip_ws(c);
    if (depth == 0) {
        if (c->p != c->len)
            return fail(c, WHY_TRAILING, c->p);
        return 0;
    }
    if (c->p >= c->len)
        return fail(c, WHY_EOF, c->len);
    if (stack[depth - 1] == '{') {
        if (c->b[c->p] == ',') {
            c->p++;
            goto key;
        }
        if (c->b[c->p] != '}')
            return fail(c, WHY_OBJ_SEP, c->p);
    } else {
        if (c->b[c->p] == ',') {
            c->p++;
            goto value;
        }
        if (c->b[c->p] != ']')
            return fail(c, WHY_ARR_SEP, c->p);
    }
    c->p++;
    depth--;
    goto after;
}

/* ---------------------------------------------------------------------------------------
 * Pass 2: the data array (valid by now, or decoded by cjson already: see ctc_json_page_ids;
 * bounds are checked everywhere, so any bytes are read safely)
 * ------------------------------------------------------------------------------------- */

/* q: the first byte after an opening '"'; returns the index of the closing one, or len.
 * memchr finds each candidate; the backslashes right before it say whether it is escaped. */
static size_t string_close(const unsigned char *b, size_t len, size_t q)
{
    size_t start = q;
    while (q < len) {
        const unsigned char *e = memchr(b + q, '"', len - q);
        size_t k, bs = 0;
        if (e == NULL)
            return len;
        k = (size_t)(e - b);
        while (k - bs > start && b[k - bs - 1] == '\\')
            bs++;
        if (bs % 2 == 0) /* not escaped */
            return k;
        q = k + 1;
    }
    return len;
}

/* the same, the index after the closing '"' (or len) */
static size_t fast_string_end(const unsigned char *b, size_t len, size_t q)
{
    size_t k = string_close(b, len, q);
    return k < len ? k + 1 : len;
}

/* Moves past the string at c->p ('"'), setting its raw contents [*cs, *ce). */
static void skip_string(jctx *c, size_t *cs, size_t *ce)
{
    size_t q = string_close(c->b, c->len, c->p + 1);

    *cs = c->p + 1;
    *ce = q;
    c->p = q < c->len ? q + 1 : q;
}

/* Moves past one value at c->p (blanks before it already skipped). */
static void skip_value(jctx *c)
{
    size_t depth = 0;
    size_t cs, ce;

    do {
        unsigned char ch;
        if (c->p >= c->len)
            return;
        ch = c->b[c->p];
        if (ch == '"') {
            skip_string(c, &cs, &ce);
        } else if (ch == '{' || ch == '[') {
            depth++;
            c->p++;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0)
                return;
            depth--;
            c->p++;
        } else if (depth == 0) {
            /* a number or a literal: it ends at the next structural or blank byte */
            while (c->p < c->len && c->b[c->p] != ',' && c->b[c->p] != '}'
                   && c->b[c->p] != ']' && !ctc_json_is_ws(c->b[c->p]))
                c->p++;
            return;
        } else {
            c->p++;
        }
    } while (depth > 0);
}

/* Classifies the value at c->p as an id and moves past it. A number is an id only as a
 * JSON integer literal in plain digits: 0 or [1-9][0-9]*, up to INT64_MAX, ending where a
 * value ends. 5.0, 5e0, -0 and 1e400 are not, whatever a decoder makes of them: ids are
 * cursors, and one rule must hold whether or not a double could have held the value. */
static int read_id(jctx *c, int64_t *id)
{
    const unsigned char *b = c->b;
    size_t q = c->p;
    int64_t v = 0;

    *id = 0;
    if (q < c->len && ctc_json_is_digit(b[q])) {
        int ok = !(b[q] == '0' && q + 1 < c->len && ctc_json_is_digit(b[q + 1]));
        while (ok && q < c->len && ctc_json_is_digit(b[q])) {
            int dgt = b[q] - '0';
            if (v > (INT64_MAX - dgt) / 10)
                ok = 0;
            else
                v = v * 10 + dgt;
            q++;
        }
        if (!ok || (q < c->len && b[q] != ',' && b[q] != '}' && b[q] != ']' && !ctc_json_is_ws(b[q]))) {
            skip_value(c);
            return CTC_ID_OTHER;
        }
        c->p = q;
        *id = v;
        return CTC_ID_INT;
    }
    if (q < c->len && b[q] == '"') {
        size_t cs, ce, i;
        int n = 0;
        skip_string(c, &cs, &ce);
        i = cs;
        while (i < ce) {
            long cp = next_cp(b, ce, &i);
            int dgt;
            if (cp < '0' || cp > '9' || ++n > 19)
                return CTC_ID_OTHER;
            dgt = (int)(cp - '0');
            if (v > (INT64_MAX - dgt) / 10)
                return CTC_ID_OTHER;
            v = v * 10 + dgt;
        }
        if (n == 0)
            return CTC_ID_OTHER;
        *id = v;
        return CTC_ID_INT;
    }
    skip_value(c);
    return CTC_ID_OTHER;
}

static int walk_data(jctx *c, ctc_record_cb on_record, void *ud, size_t *count)
{
    size_t n = 0;

    c->p++;                       /* '[' */
    skip_ws(c);
    if (c->p < c->len && c->b[c->p] == ']') {
        *count = 0;
        return 0;
    }
    while (c->p < c->len) {
        int kind = CTC_ID_MISSING;
        int64_t id = 0;

        skip_ws(c);
        if (c->p < c->len && c->b[c->p] == '{') {
            c->p++;
            skip_ws(c);
            while (c->p < c->len && c->b[c->p] == '"') {
                size_t cs, ce;
                int is_id;
                skip_string(c, &cs, &ce);
                is_id = str_equals(c->b + cs, ce - cs, "id");
                skip_ws(c);
                if (c->p < c->len && c->b[c->p] == ':')
                    c->p++;
                skip_ws(c);
                if (is_id)
                    kind = read_id(c, &id);
                else
                    skip_value(c);
                if (kind != CTC_ID_INT)
                    id = 0;
                skip_ws(c);
                if (c->p < c->len && c->b[c->p] == ',')
                    c->p++;
                skip_ws(c);
            }
            if (c->p < c->len && c->b[c->p] == '}')
                c->p++;
        } else {
            skip_value(c);
        }
        if (on_record != NULL) {
            int r = on_record(ud, n, kind, id);
            if (r != 0) {
                *count = n + 1;
                return r;
            }
        }
        n++;
        skip_ws(c);
        if (c->p < c->len && c->b[c->p] == ',') {
            c->p++;
            continue;
        }
        break;                    /* ']' */
    }
    *count = n;
    return 0;
}

int ctc_json_scan_page(const char *body, size_t len, ctc_record_cb on_record, void *ud,
                       size_t *count, const char **why, size_t *err_offset)
{
    jctx c;
    size_t data_off;
    size_t dummy_count;

    if (count == NULL)
        count = &dummy_count;
    *count = 0;
    c.b = (const unsigned char *)body;
    c.len = body != NULL ? len : 0;
    c.p = 0;
    c.why = WHY_INTERNAL;
    c.erroff = 0;
    if (validate(&c, &data_off) != 0) {
        if (why != NULL)
            *why = c.why;
        if (err_offset != NULL)
            *err_offset = c.erroff;
        return -1;
    }
    if (data_off == NONE)
        return CTC_JSON_NO_DATA_ARRAY;
    c.p = data_off;
    return walk_data(&c, on_record, ud, count);
}

typedef struct {
    int kind;
    int64_t id;
} last_rec;

static int keep_last(void *ud, size_t index, int kind, int64_t id)
{
    last_rec *r = ud;
    (void)index;
    r->kind = kind;
    r->id = id;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Without validation, for bodies a decoder has accepted (the records reader) or as a hint
 * (the last record): see parsers.h. The "data" array is found with strings skipped by memchr,
 * only structural bytes looked at, so a page is read at memory speed; the elements are read by
 * pass 2's walk (for the last record, only the last one).
 * ------------------------------------------------------------------------------------- */

/* Moves past the value at c->p. Inside an array (in_array), counts its elements into *n and
 * notes where the last one starts (*last); c->p must then be at the '['. */
static void fast_skip(jctx *c, int in_array, size_t *n, size_t *last)
{
    const unsigned char *b = c->b;
    size_t len = c->len, p = c->p, depth = 0;

    if (p < len && b[p] == '"') {
        c->p = fast_string_end(b, len, p + 1);
        return;
    }
    if (p >= len || (b[p] != '{' && b[p] != '[')) {
        while (p < len && b[p] != ',' && b[p] != '}' && b[p] != ']' && !ctc_json_is_ws(b[p]))
            p++;
        c->p = p;
        return;
    }
    if (in_array) {
        c->p = p + 1;
        skip_ws(c);
        p = c->p;
        *n = p < len && b[p] != ']';
        *last = p;
        depth = 1;
    }
    while (p < len) {
        unsigned char ch = b[p];
        if (ch == '"') {
            p = fast_string_end(b, len, p + 1);
            continue;
        }
        if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth <= 1) {
                p++;
                break;
            }
            depth--;
        } else if (ch == ',' && in_array && depth == 1) {
            ++*n;
            c->p = p + 1;
            skip_ws(c);
            *last = p = c->p;
            continue;
        }
        p++;
    }
    c->p = p;
}

/* c->p at the top-level value. Moves over its members; returns the offset of the '[' of
 * the value of the last top-level "data" member, or NONE (also when that value is no array).
 * With n and last: the number of that array's elements and where the last one starts. */
static size_t find_data(jctx *c, size_t *n, size_t *last)
{
    size_t data_off = NONE, dn = 0, dlast = 0;

    skip_ws(c);
    if (c->p >= c->len || c->b[c->p] != '{')
        return NONE;
    c->p++;
    /* each member: a key (a string: it always moves on), ':', a value; the last "data" wins */
    for (;;) {
        size_t cs, ce;
        int is_data;
        skip_ws(c);
        if (c->p >= c->len || c->b[c->p] != '"')
            break;
        skip_string(c, &cs, &ce);
        is_data = str_equals(c->b + cs, ce - cs, "data");
        skip_ws(c);
        if (c->p < c->len && c->b[c->p] == ':')
            c->p++;
        skip_ws(c);
        if (is_data) {
            data_off = c->p < c->len && c->b[c->p] == '[' ? c->p : NONE;
            dn = 0;
            fast_skip(c, data_off != NONE && n != NULL, &dn, &dlast);
        } else {
            fast_skip(c, 0, NULL, NULL);
        }
        skip_ws(c);
        if (c->p >= c->len || c->b[c->p] != ',')
            break;
        c->p++;
    }
    if (n != NULL) {
        *n = dn;
        *last = dlast;
    }
    return data_off;
}

static void init_ctx(jctx *c, const char *body, size_t len)
{
    c->b = (const unsigned char *)body;
    c->len = body != NULL ? len : 0;
    c->p = 0;
    c->why = NULL;
    c->erroff = 0;
}

int ctc_json_page_last(const char *body, size_t len, int *kind, int64_t *id, size_t *count)
{
    jctx c;
    size_t data_off, n = 0, last = 0;
    last_rec r;

    *kind = CTC_ID_MISSING;
    *id = 0;
    *count = 0;
    init_ctx(&c, body, len);
    data_off = find_data(&c, &n, &last);
    if (data_off == NONE)
        return CTC_JSON_NO_DATA_ARRAY;
    *count = n;
    if (n > 0 && last > data_off) {
        size_t one;
        /* pass 2's walk over the last element alone: from the byte before it, as if a '[' */
        c.p = last - 1;
        r.kind = CTC_ID_MISSING;
        r.id = 0;
        walk_data(&c, keep_last, &r, &one);
        *kind = r.kind;
        *id = r.id;
    }
    return 0;
}

int ctc_json_page_ids(const char *body, size_t len, ctc_record_cb on_record, void *ud,
                      size_t *count)
{
    jctx c;
    size_t data_off;

    *count = 0;
    init_ctx(&c, body, len);
    data_off = find_data(&c, NULL, NULL);
    if (data_off == NONE)
        return CTC_JSON_NO_DATA_ARRAY;
    c.p = data_off;
    return walk_data(&c, on_record, ud, count);
}
