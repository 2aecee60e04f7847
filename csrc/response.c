/*
 * Response reading: HTTP status, JSON (the direct decoder of jsondecode.c), the provider's
 * meta.success / meta.message, the type of data each call expects, and for record pages the
 * cursor. Returns the call's value(s), or nil, { kind = "http" | "api" | "protocol", message,
 * sent = true }.
 *
 * The decoder gives the values lua-cjson 2.1.0 gives (and refuses what it refuses, saying what and
 * at which byte), and finishes the records of the page as it goes: null fields absent, whole
 * numbers integers on 5.3+, and every record id read from its own bytes by one rule (plain digits,
 * as a JSON integer or a string, up to 2^63-1), so a cursor past 2^53 is exact.
 */
#include <math.h>
#include <string.h>
#include "ctc.h"
#include "parsers.h"


#define ARG_SECRETS 5

/* Every failure here comes after an answer arrived: sent = true. */
static int fail(lua_State *L, const char *kind, const char *message)
{
    return ctc_push_fail(L, kind, 1, "%s", message);
}

/* the same with the message on top (it may hold NUL bytes) */
static int fail_top(lua_State *L, const char *kind)
{
    return ctc_push_fail_top(L, kind, 1);
}

/* offset of the first needle in hay at or after from, or hn */
static size_t find(const char *hay, size_t hn, size_t from, const char *needle, size_t nn)
{
    size_t i;
    if (nn == 0 || hn < nn)
        return hn;
    for (i = from; i + nn <= hn; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nn) == 0)
            return i;
    return hn;
}

/* Not static: the fuzz harness's old reader uses these two (csrc/test/fuzz/response_redact.h);
 * hidden all the same, whatever the build's flags. */
#pragma GCC visibility push(hidden)

/* Pushes s[0..n) with every occurrence of each string of the secrets array
 * (argument 5) replaced by "***". Done on whole text, before any excerpt is
 * cut, so a secret that straddles the cut cannot survive in part. */
void ctc_push_redacted(lua_State *L, const char *s, size_t n)
{
    size_t i, count;
    lua_pushlstring(L, s, n);
    if (!lua_istable(L, ARG_SECRETS))
        return;
    count = ctc_rawlen(L, ARG_SECRETS);
    for (i = 1; i <= count; i++) {
        size_t sn, cn, at, start = 0;
        const char *sec, *cur;
        luaL_Buffer b;
        lua_rawgeti(L, ARG_SECRETS, (int)i);
        if (lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 1);
            continue;
        }
        sec = lua_tolstring(L, -1, &sn);
        lua_pop(L, 1); /* the secrets table keeps the string alive */
        cur = lua_tolstring(L, -1, &cn);
        if ((at = find(cur, cn, 0, sec, sn)) == cn)
            continue;
        luaL_buffinit(L, &b);
        do {
            luaL_addlstring(&b, cur + start, at - start);
            luaL_addlstring(&b, "***", 3);
            start = at + sn;
        } while ((at = find(cur, cn, start, sec, sn)) != cn);
        luaL_addlstring(&b, cur + start, cn - start);
        luaL_pushresult(&b);
        lua_remove(L, -2);
    }
}

/* A short, printable excerpt of a body for an error message, secrets
 * redacted first. */
void ctc_push_excerpt(lua_State *L, const char *body, size_t len)
{
    char out[64];
    size_t i, k = 0, n;
    const char *s;
    ctc_push_redacted(L, body, len);
    s = lua_tolstring(L, -1, &n);
    for (i = 0; i < n && k < sizeof out - 4; i++)
        out[k++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '.';
    if (i < n) { out[k++] = '.'; out[k++] = '.'; out[k++] = '.'; }
    lua_pop(L, 1);
    lua_pushlstring(L, out, k);
}
#pragma GCC visibility pop

/* Decodes the body (arg 3); leaves the value or the decoder's message on top. */
static int decode(lua_State *L, const char *body, size_t n, ctc_json_page *pg)
{
    return ctc_json_decode(L, body, n, pg) == 0;
}

/* JSON null (cjson.null, a NULL lightuserdata) or absent */
static int is_null(lua_State *L, int idx)
{
    return lua_isnil(L, idx)
           || (lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == NULL);
}

static int http_error(lua_State *L, int status, const char *body, size_t n)
{
    int top = lua_gettop(L);
    ctc_json_page pg;
    /* some gateways explain themselves in the provider's own meta form */
    pg.asked = 0;
    if (n > 0 && decode(L, body, n, &pg) && lua_istable(L, -1)) {
        lua_getfield(L, -1, "meta");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "message");
            if (lua_type(L, -1) == LUA_TSTRING) {
                size_t mn;
                const char *m = lua_tolstring(L, -1, &mn);
                lua_pushfstring(L, "the server answered HTTP %d: ", status);
                ctc_push_redacted(L, m, mn);
                lua_concat(L, 2);
                return fail_top(L, "http");
            }
        }
    }
    lua_settop(L, top);
    if (n == 0)
        lua_pushfstring(L, "the server answered HTTP %d with an empty body", status);
    else {
        ctc_push_excerpt(L, body, n);
        lua_pushfstring(L, "the server answered HTTP %d (body: \"%s\")", status, lua_tostring(L, -1));
    }
    return fail_top(L, "http");
}

/* ---- record pages ---- */

/* data at index `data`, decoded as a page (pg); arg 4 is the maxId that was asked for. The
 * decoder has read every id by the one rule (CTC_ID_INT in parsers.h) and put the exact ones in
 * the records, so the answer never depends on whether a double could have held the ids. */
static int read_page(lua_State *L, int data, const ctc_json_page *pg)
{
    int64_t asked = 0;

    if (is_null(L, data)) {
        /* some deployments send null for "no records": an empty page, in the same
         * shape as [] (records, no next cursor) */
        lua_newtable(L);
        lua_pushnil(L);
        return 2;
    }
    if (!lua_istable(L, data))
        return fail(L, "protocol", "response data is not an array of records");
    if (!lua_isnoneornil(L, 4) && ctc_to_id(L, 4, &asked) != NULL)
        return luaL_argerror(L, 4, "cursor expected");
    /* an empty table may also be {}: the decoder tells */
    if (!pg->found)
        return fail(L, "protocol", "response data is not an array of records");
    if (pg->bad_index != 0) {
        char at[CTC_I64_LEN];
        lua_pushfstring(L, "record %s %s", ctc_i64_str(at, (int64_t)pg->bad_index),
                        pg->bad_kind == CTC_ID_MISSING
                            ? "has no id"
                            : "has an id that is not an integer in plain digits "
                              "(0 to 9223372036854775807, as a number or a string)");
        return fail_top(L, "protocol");
    }
    if (pg->stall_index != 0) {
        /* a page that does not move past maxId would loop forever; ids printed
         * exactly (a double would print 2^53 + 1 as 9.007199254741e+15) */
        char at[CTC_I64_LEN], id[CTC_I64_LEN], above[CTC_I64_LEN];
        lua_pushfstring(L, "page ids do not advance: record %s has id %s, not above %s",
                        ctc_i64_str(at, (int64_t)pg->stall_index), ctc_i64_str(id, pg->stall_id),
                        ctc_i64_str(above, pg->stall_prev));
        return fail_top(L, "protocol");
    }
    lua_pushvalue(L, data);
    if (pg->count >= CTC_PAGE_SIZE)
        ctc_push_id(L, pg->last_id);
    else
        lua_pushnil(L);
    return 2;
}

/* ---- a dial's answer, read in one pass ---- */

typedef struct scan {
    const char *b;
    size_t n, p;
} scan;

static void skip_ws(scan *s)
{
    while (s->p < s->n && (s->b[s->p] == ' ' || s->b[s->p] == '\t' || s->b[s->p] == '\n' || s->b[s->p] == '\r'))
        s->p++;
}

/* A string without escapes, NULs or control bytes at s->p (after its '"'): its bytes, or -1. */
static int plain_string(scan *s, const char **out, size_t *len)
{
    size_t i;
    if (s->p >= s->n || s->b[s->p] != '"')
        return -1;
    for (i = s->p + 1; i < s->n; i++) {
        unsigned char c = (unsigned char)s->b[i];
        if (c > '\\' || (c >= 0x20 && c != '"' && c != '\\'))
            continue; /* the usual byte: one test */
        if (c == '"') {
            *out = s->b + s->p + 1;
            *len = i - s->p - 1;
            s->p = i + 1;
            return 0;
        }
        if (c == '\\' || c < 0x20)
            return -1;
    }
    return -1;
}

/* The key of a member and its colon: 0, or -1. */
static int member_key(scan *s, const char **key, size_t *len)
{
    skip_ws(s);
    if (plain_string(s, key, len) != 0)
        return -1;
    skip_ws(s);
    if (s->p >= s->n || s->b[s->p] != ':')
        return -1;
    s->p++;
    skip_ws(s);
    return 0;
}

/* After a member: 1 (a ',' follows), 0 (the closing '}'), or -1. */
static int member_end(scan *s)
{
    skip_ws(s);
    if (s->p < s->n && (s->b[s->p] == ',' || s->b[s->p] == '}'))
        return s->b[s->p++] == ',';
    return -1;
}

static int is_key(const char *k, size_t n, const char *name)
{
    return n == strlen(name) && memcmp(k, name, n) == 0;
}

/* meta's value at s->p: { "success": true, "message": "..." } in either order, each at most once
 * and nothing else: 0 with success true, else -1. */
static int accepted_meta(scan *s)
{
    int success = 0, message = 0, more;
    const char *k, *v;
    size_t kn, vn;
    if (s->p >= s->n || s->b[s->p++] != '{')
        return -1;
    do {
        if (member_key(s, &k, &kn) != 0)
            return -1;
        if (is_key(k, kn, "success") && !success && s->n - s->p >= 4 && memcmp(s->b + s->p, "true", 4) == 0) {
            s->p += 4;
            success = 1;
        } else if (is_key(k, kn, "message") && !message && plain_string(s, &v, &vn) == 0) {
            message = 1;
        } else {
            return -1;
        }
    } while ((more = member_end(s)) == 1);
    return more == 0 && success ? 0 : -1;
}

/* The answer of an accepted dial in the form the provider sends it, {"meta":{"success":true,
 * "message":"..."},"data":"<session id>"} (members in either order, each once, plain strings,
 * nothing else): pushes the session id and returns 1. Anything else returns 0 with nothing pushed,
 * and the full reader decides; on what this accepts both give the same value. */
int ctc_fast_dial(lua_State *L, const char *body, size_t n)
{
    scan s;
    int meta = 0, more;
    const char *k, *data = NULL;
    size_t kn, dn = 0;
    s.b = body;
    s.n = n;
    s.p = 0;
    skip_ws(&s);
    if (s.p >= s.n || s.b[s.p++] != '{')
        return 0;
    do {
        if (member_key(&s, &k, &kn) != 0)
            return 0;
        if (is_key(k, kn, "meta") && !meta && accepted_meta(&s) == 0)
            meta = 1;
        else if (is_key(k, kn, "data") && data == NULL && plain_string(&s, &data, &dn) == 0 && dn > 0)
            ;
        else
            return 0;
    } while ((more = member_end(&s)) == 1);
    skip_ws(&s);
    if (more != 0 || !meta || data == NULL || s.p != s.n)
        return 0;
    lua_pushlstring(L, data, dn);
    return 1;
}

/* ---- the reader ---- */

/* core.response(op, status, body [, asked_max_id [, secrets]]) -> value(s) | nil, err
 * secrets: an array of strings replaced by "***" in any text taken from the body. */
static int l_response(lua_State *L)
{
    int op = luaL_checkoption(L, 1, NULL, ctc_op_names);
    lua_Number st = lua_isnumber(L, 2) ? lua_tonumber(L, 2) : -1;
    int status;
    size_t n;
    const char *body = luaL_checklstring(L, 3, &n);
    int top, meta, data;
    ctc_json_page pg;

    lua_settop(L, ARG_SECRETS);
    if (!lua_isnil(L, ARG_SECRETS))
        luaL_checktype(L, ARG_SECRETS, LUA_TTABLE);
    /* checked as a double: (int) of NaN or 1e300 is undefined behaviour */
    if (!(st >= 100 && st <= 599) || st != floor(st)) {
        lua_pushvalue(L, 2);
        lua_pushfstring(L, "the transport gave an HTTP status that is not an integer from 100 to 599 (%s)",
                        lua_type(L, 2) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, 2));
        return fail_top(L, "protocol");
    }
    status = (int)st;
    if (status < 200 || status > 299)
        return http_error(L, status, body, n);
    if (op == CTC_OP_DIAL && ctc_fast_dial(L, body, n))
        return 1;
    /* the ids must rise above the cursor asked (checked as an argument below, on a page) */
    pg.asked = 0;
    if (op == CTC_OP_RECORDS_PAGE && !lua_isnoneornil(L, 4) && ctc_to_id(L, 4, &pg.asked) != NULL)
        pg.asked = 0;
    if (!decode(L, body, n, &pg)) {
        size_t en;
        const char *e = lua_tolstring(L, -1, &en);
        ctc_push_redacted(L, e ? e : "?", e ? en : 1); /* the decoder's reason, in case it quotes the body */
        ctc_push_excerpt(L, body, n);
        lua_pushfstring(L, "response body is not JSON (%s): \"%s\"",
                        lua_tostring(L, -2), lua_tostring(L, -1));
        return fail_top(L, "protocol");
    }
    top = lua_gettop(L);
    if (!lua_istable(L, top))
        return fail(L, "protocol", "response is not a JSON object");
    lua_getfield(L, top, "meta");
    meta = lua_gettop(L);
    if (!lua_istable(L, meta))
        return fail(L, "protocol", "response has no meta object");
    lua_getfield(L, meta, "success");
    if (!lua_isboolean(L, -1))
        return fail(L, "protocol", "response meta.success is not a boolean");
    if (!lua_toboolean(L, -1)) {
        lua_getfield(L, meta, "message");
        if (lua_type(L, -1) == LUA_TSTRING && ctc_rawlen(L, -1) > 0) {
            size_t mn;
            const char *m = lua_tolstring(L, -1, &mn);
            ctc_push_redacted(L, m, mn); /* pushed by length: a NUL survives */
            return fail_top(L, "api");
        }
        return fail(L, "api", "the provider refused the call and gave no message");
    }
    lua_getfield(L, top, "data");
    data = lua_gettop(L);
    switch (op) {
    case CTC_OP_BIND_SEAT:
        lua_pushboolean(L, 1);
        return 1;
    case CTC_OP_DIAL:
        if (lua_type(L, data) != LUA_TSTRING || ctc_rawlen(L, data) == 0)
            return fail(L, "protocol", "response data is not a session id string");
        return 1;
    case CTC_OP_BALANCE:
        if (lua_type(L, data) != LUA_TNUMBER)
            return fail(L, "protocol", "response data is not a number");
#if CTC_HAS_INTEGERS
        {
            lua_Number v = lua_tonumber(L, data);
            if (v == floor(v) && fabs(v) < CTC_EXACT_DOUBLE_MAX)
                lua_pushinteger(L, (lua_Integer)v);
        }
#endif
        return 1;
    default:
        return read_page(L, data, &pg);
    }
}

void ctc_open_response(lua_State *L)
{
    lua_pushcfunction(L, l_response);
    lua_setfield(L, -2, "response");
}
