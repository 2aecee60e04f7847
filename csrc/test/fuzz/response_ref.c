/*
 * THE OLD READER, kept for the differential fuzzing of csrc/response.c only (never built into
 * the core): core.response as it was before the direct decoder (csrc/jsondecode.c), with lua-cjson
 * decoding, a walk over every record and the ids read again from the raw bytes. The harness
 * registers it as core.ref_response and holds the new reader to its every answer.
 *
 * Response reading: HTTP status, JSON (lua-cjson, a private instance), the
 * provider's meta.success / meta.message, the type of data each call expects,
 * and for record pages the cursor. Returns the call's value(s), or
 * nil, { kind = "http" | "api" | "protocol", message, sent = true }.
 *
 * Record ids are read from the raw body by the C scanner, not from cjson's
 * doubles, so a cursor past 2^53 is still exact (cjson 2.1.0 decodes every
 * number as a double, and on 5.3+ an id 8 would come back as 8.0), and one rule
 * decides what an id is: plain digits, as a JSON integer or a string.
 */
#include <math.h>
#include <string.h>
#include "../../ctc.h"
#include "../oracle/jsonscan.h"
#include "response_redact.h"


#define UV_DECODE lua_upvalueindex(1)
#define UV_NULL lua_upvalueindex(2)

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

/* Decodes arg 3 with the private cjson; leaves the value or the error on top. */
static int decode(lua_State *L)
{
    lua_pushvalue(L, UV_DECODE);
    lua_pushvalue(L, 3);
    return lua_pcall(L, 1, 1, 0) == 0;
}

static int is_null(lua_State *L, int idx)
{
    return lua_isnil(L, idx) || lua_rawequal(L, idx, UV_NULL);
}

static int http_error(lua_State *L, int status, const char *body, size_t n)
{
    int top = lua_gettop(L);
    /* some gateways explain themselves in the provider's own meta form */
    if (n > 0 && decode(L) && lua_istable(L, -1)) {
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

typedef struct page_scan {
    int64_t *ids;
    size_t cap;
    size_t bad_index;
    int bad_kind;
} page_scan;

static int on_record(void *ud, size_t index, int kind, int64_t id)
{
    page_scan *ps = ud;
    if (index >= ps->cap)
        return 2; /* the scanner and cjson disagree on the length */
    if (kind != CTC_ID_INT) {
        ps->bad_index = index;
        ps->bad_kind = kind;
        return 3;
    }
    ps->ids[index] = id;
    return 0;
}

/* Walks one record once: null fields become absent and, on 5.3+, whole floats
 * become integers (cjson 2.1.0 decodes every number as a double). The id is not
 * read here: a double cannot tell 5 from 5.0, nor hold every id past 2^53. */
static void normalize_record(lua_State *L, int rec)
{
    lua_pushnil(L);
    while (lua_next(L, rec) != 0) {
        int t = lua_type(L, -1);
#if CTC_HAS_INTEGERS
        if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
            lua_Number v = lua_tonumber(L, -1);
            if (v == floor(v) && fabs(v) < 9007199254740992.0) {
                lua_pushvalue(L, -2);
                lua_pushinteger(L, (lua_Integer)v);
                lua_rawset(L, rec); /* changing a field's value during lua_next is allowed */
            }
        } else
#endif
        if (t == LUA_TLIGHTUSERDATA && lua_rawequal(L, -1, UV_NULL)) {
            lua_pushvalue(L, -2);
            lua_pushnil(L);
            lua_rawset(L, rec); /* clearing a field during lua_next is allowed */
        }
        lua_pop(L, 1);
    }
}

/* data at index `data`; arg 4 is the maxId that was asked for.
 * cjson has decoded (and so validated) the body; every id is then read from the
 * raw bytes, one rule for all of them (CTC_ID_INT in parsers.h), so the answer
 * never depends on whether a double could have held the ids. */
static int read_page(lua_State *L, int data, const char *body, size_t n)
{
    size_t count = 0, i;
    int64_t asked = 0, prev;
    page_scan ps;
    int rc;

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
    ps.cap = ctc_rawlen(L, data);
    ps.ids = ctc_newuserdata(L, (ps.cap + 1) * sizeof(int64_t));
    ps.bad_kind = CTC_ID_INT;
    ps.bad_index = 0;
    for (i = 0; i < ps.cap; i++) {
        lua_rawgeti(L, data, (int)i + 1);
        if (lua_istable(L, -1))
            normalize_record(L, lua_gettop(L));
        lua_pop(L, 1);
    }
    /* an empty table may also be {}: the scanner tells */
    rc = ctc_json_page_ids(body, n, on_record, &ps, &count);
    if (rc == CTC_JSON_NO_DATA_ARRAY)
        return fail(L, "protocol", "response data is not an array of records");
    if (rc == 3) {
        char at[CTC_I64_LEN];
        lua_pushfstring(L, "record %s %s", ctc_i64_str(at, (int64_t)ps.bad_index + 1),
                        ps.bad_kind == CTC_ID_MISSING
                            ? "has no id"
                            : "has an id that is not an integer in plain digits "
                              "(0 to 9223372036854775807, as a number or a string)");
        return fail_top(L, "protocol");
    }
    if (rc != 0 || count != ps.cap)
        /* cjson accepted the body: not seen, but never a wrong id */
        return fail(L, "protocol", "response data could not be read as an array of records");
    prev = asked;
    for (i = 0; i < count; i++) {
        if (ps.ids[i] <= prev) {
            /* a page that does not move past maxId would loop forever; ids printed
             * exactly (a double would print 2^53 + 1 as 9.007199254741e+15) */
            char at[CTC_I64_LEN], id[CTC_I64_LEN], above[CTC_I64_LEN];
            lua_pushfstring(L, "page ids do not advance: record %s has id %s, not above %s",
                            ctc_i64_str(at, (int64_t)i + 1), ctc_i64_str(id, ps.ids[i]),
                            ctc_i64_str(above, prev));
            return fail_top(L, "protocol");
        }
        prev = ps.ids[i];
    }
    /* the scanner's exact ids replace cjson's doubles */
    for (i = 0; i < count; i++) {
        lua_rawgeti(L, data, (int)i + 1);
        if (!lua_istable(L, -1)) {
            char at[CTC_I64_LEN];
            lua_pushfstring(L, "record %s is not an object", ctc_i64_str(at, (int64_t)i + 1));
            return fail_top(L, "protocol");
        }
        ctc_push_id(L, ps.ids[i]);
        lua_setfield(L, -2, "id");
        lua_pop(L, 1);
    }
    lua_pushvalue(L, data);
    if (count >= CTC_PAGE_SIZE)
        ctc_push_id(L, ps.ids[count - 1]);
    else
        lua_pushnil(L);
    return 2;
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
    if (!decode(L)) {
        size_t en;
        const char *e = lua_tolstring(L, -1, &en);
        ctc_push_redacted(L, e ? e : "?", e ? en : 1); /* cjson's reason, in case it quotes the body */
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
            if (v == floor(v) && fabs(v) < 9007199254740992.0)
                lua_pushinteger(L, (lua_Integer)v);
        }
#endif
        return 1;
    default:
        return read_page(L, data, body, n);
    }
}

void ctc_ref_open_response(lua_State *L);
void ctc_ref_open_response(lua_State *L)
{
    /* a private cjson instance: other modules' settings never reach ours */
    lua_getglobal(L, "require");
    lua_pushstring(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    lua_getfield(L, -1, "decode_invalid_numbers");
    if (lua_isfunction(L, -1)) {
        lua_pushboolean(L, 0);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    /* cjson's default is 1000; the scanner's limit, for every call: a body nested
     * deeper than CTC_JSON_MAX_DEPTH is refused, whichever op and data */
    lua_getfield(L, -1, "decode_max_depth");
    if (lua_isfunction(L, -1)) {
        lua_pushinteger(L, CTC_JSON_MAX_DEPTH);
        lua_call(L, 1, 0);
    } else {
        lua_pop(L, 1);
    }
    lua_getfield(L, -1, "decode");
    lua_getfield(L, -2, "null");
    lua_pushcclosure(L, l_response, 2);
    lua_setfield(L, -4, "ref_response");
    lua_pop(L, 2);
}
