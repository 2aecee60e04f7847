/*
 * libFuzzer harness for the response reader, core.response(op, status, body [, asked
 * [, secrets]]) in csrc/response.c: Lua C code behind the system lua-cjson. One Lua 5.4 state
 * for the whole run holds clicktocall.core (from package.preload) and cjson (package.cpath).
 * Input: a response body. Per input, under lua_pcall, with a secrets array (not for bind_seat,
 * so the path without one runs too):
 *   - status 200 and each op: bind_seat, dial, balance, records_page (no cursor, cursor 0.0);
 *   - one non-2xx status and one that is no HTTP status (chosen by the length), one op.
 * Checks: it never raises; it returns exactly the documented values: nil, { kind, message,
 * sent = true } (kind "protocol" for a status that is none, "http" for a non-2xx one, "api"
 * or "protocol" for a 2xx one; a message that holds neither secret), or per op true / a
 * non-empty string / a number / (records, next), where the records are objects without
 * cjson.null fields, with integer ids rising above the cursor that are the scanner's ids
 * wherever it reads one, and next is the last id of a full page (else nil). Cursor 0 gives
 * what no cursor gives; on a page, a cursor just below the first id (as a string of digits)
 * gives the same page, and the first id itself is refused. The scanner's page_last names
 * the reader's last id and count on every page the reader accepts. Differential: the same page
 * with one more record whose id no double holds (2^53 + 1 or 2^63 - 1, a number or a
 * string) gives the same records plus that one, or the same refusal, so no answer depends on
 * whether some id of a page fits a double. Differential against the old reader
 * (response_ref.c: lua-cjson, a walk over the records, the ids scanned again from the raw
 * bytes, compiled into this harness only): every call above is made to both, and every
 * result must be the same Lua value, recursively (records, fields, integer or float, the sign
 * of a zero, cjson.null where it shows), or both a refusal of the same kind (the decoders' own
 * messages for a body that is not JSON aside); and so is the input put
 * as a field value into a page of two records. The Lua heap, after a full
 * collection now and then, stays where it started (the reader keeps nothing). One input in
 * 16 runs under a collector that never rests.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "fuzz.h"
#include "../oracle/jsonscan.h"

#ifndef CTC_FUZZ_CPATH
#define CTC_FUZZ_CPATH "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
#endif

int luaopen_clicktocall_core(lua_State *L);
void ctc_ref_open_response(lua_State *L); /* response_ref.c: the old reader */

#define PAGE_SIZE 100
#define ARGS 5
/* letters and digits, 12 or more: no fixed sentence of the reader holds such a run, and
 * no id (digits only) can be one, so only text taken from the body could */
static const char SECRET[] = "Zk4Qm9Tx2Lp7Wr5N";
static const char SECRET2[] = "Q2xpY2tUb0NhbGw";

static lua_State *L;
static int ref_response, ref_old, ref_secrets, ref_null, ref_count;
static size_t baseline_kb;
static unsigned long inputs, diffs, accepted_diffs, old_calls, old_accepted;

/* how much the differential checks compared, for the log */
static void report(void)
{
    fprintf(stderr, "fuzz_response: %lu inputs; the page plus a record past 2^53 compared %lu times "
            "(%lu of them pages the reader accepts); the old reader (cjson) compared %lu calls "
            "(%lu of them answers that are no error)\n", inputs, diffs, accepted_diffs, old_calls,
            old_accepted);
}

typedef struct {
    const char *body;
    size_t len;
} input;

static void setup(void)
{
    L = luaL_newstate();
    REQUIRE(L != NULL);
    atexit(report);
    luaL_openlibs(L);
    REQUIRE(luaL_dostring(L, "package.cpath = '" CTC_FUZZ_CPATH ";' .. package.cpath") == 0);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_clicktocall_core);
    lua_setfield(L, -2, "clicktocall.core");
    lua_pop(L, 2);
    if (luaL_dostring(L, "local core = require('clicktocall.core') "
                         "return core.response, require('cjson').null")
        != 0) {
        fprintf(stderr, "fuzz: cannot load the core: %s\n", lua_tostring(L, -1));
        REQUIRE(0);
    }
    /* the old reader (lua-cjson, the walk, the raw id scan), which needs require('cjson') */
    lua_newtable(L);
    ctc_ref_open_response(L);
    lua_getfield(L, -1, "ref_response");
    REQUIRE(lua_isfunction(L, -1));
    ref_old = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);
    ref_null = luaL_ref(L, LUA_REGISTRYINDEX);
    ref_response = luaL_ref(L, LUA_REGISTRYINDEX);
    /* the number of records a plain cjson (its own depth limit, 1000) finds in a body, or -1:
     * the differential check's judge of which bodies are pages at all */
    if (luaL_dostring(L, "local cjson = require('cjson').new() "
                         "cjson.decode_invalid_numbers(false) "
                         "return function(s) local ok, v = pcall(cjson.decode, s) "
                         "if ok and type(v) == 'table' and type(v.data) == 'table' then "
                         "return #v.data end return -1 end")
        != 0) {
        fprintf(stderr, "fuzz: %s\n", lua_tostring(L, -1));
        REQUIRE(0);
    }
    ref_count = luaL_ref(L, LUA_REGISTRYINDEX);
    /* two secrets, plus an empty string and a number, which the reader must skip */
    lua_createtable(L, 4, 0);
    lua_pushstring(L, SECRET);
    lua_rawseti(L, -2, 1);
    lua_pushliteral(L, "");
    lua_rawseti(L, -2, 2);
    lua_pushinteger(L, 42);
    lua_rawseti(L, -2, 3);
    lua_pushstring(L, SECRET2);
    lua_rawseti(L, -2, 4);
    ref_secrets = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_gc(L, LUA_GCCOLLECT, 0);
    baseline_kb = (size_t)lua_gc(L, LUA_GCCOUNT, 0);
}

static int contains(const char *hay, size_t hn, const char *needle)
{
    size_t nn = strlen(needle), i;
    for (i = 0; i + nn <= hn; i++)
        if (memcmp(hay + i, needle, nn) == 0)
            return 1;
    return 0;
}

/* one call's arguments: the cursor as Lua code may pass it (nil, an integer, a string of
 * digits, a float), and with or without the secrets array */
enum { ASK_NONE, ASK_INT, ASK_STRING, ASK_FLOAT };
typedef struct {
    const char *op;
    double status;
    int ask;
    lua_Integer asked;
    int secrets;
} req;

static int whole_status(double st)
{
    return st >= 100 && st <= 599 && st == floor(st);
}

/* whether the values at a and b are the same Lua value: the same type; numbers the same
 * subtype, value and sign (so -0.0 is not 0, 5.0 is not 5); tables the same keys with the
 * same values, recursively */
static int same_value(int a, int b, int depth)
{
    int t = lua_type(L, a);
    if (t != lua_type(L, b) || depth > 200)
        return 0;
    switch (t) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, a) != lua_isinteger(L, b))
            return 0;
        if (lua_isinteger(L, a))
            return lua_tointeger(L, a) == lua_tointeger(L, b);
        return lua_tonumber(L, a) == lua_tonumber(L, b)
               && signbit(lua_tonumber(L, a)) == signbit(lua_tonumber(L, b));
    case LUA_TTABLE: {
        size_t na = 0, nb = 0;
        int ok = 1;
        a = lua_absindex(L, a);
        b = lua_absindex(L, b);
        lua_pushnil(L);
        while (lua_next(L, a) != 0) {
            na++;
            lua_pushvalue(L, -2);
            lua_rawget(L, b);
            if (ok && !same_value(-1, -2, depth + 1))
                ok = 0;
            lua_pop(L, 2);
        }
        lua_pushnil(L);
        while (lua_next(L, b) != 0) {
            nb++;
            lua_pop(L, 1);
        }
        return ok && na == nb && lua_getmetatable(L, a) == 0 && lua_getmetatable(L, b) == 0;
    }
    default:
        return lua_rawequal(L, a, b);
    }
}

static int starts(const char *s, const char *prefix)
{
    return s != NULL && strncmp(s, prefix, strlen(prefix)) == 0;
}

/* a refusal each at a and b (nil, { kind, message, sent }): the same kind and sent, and the same
 * message, except that a body neither decoder reads may be refused in each one's words (the
 * differential compares values and accept or refuse, not the decoders' messages) */
static int same_refusal(int a, int b)
{
    static const char NOT_JSON[] = "response body is not JSON (";
    const char *ma, *mb;
    int same;
    if (!lua_isnil(L, a) || !lua_isnil(L, b) || !lua_istable(L, a + 1) || !lua_istable(L, b + 1))
        return 0;
    lua_getfield(L, a + 1, "kind");
    lua_getfield(L, b + 1, "kind");
    lua_getfield(L, a + 1, "sent");
    lua_getfield(L, b + 1, "sent");
    lua_getfield(L, a + 1, "message");
    lua_getfield(L, b + 1, "message");
    ma = lua_tostring(L, -2);
    mb = lua_tostring(L, -1);
    same = lua_rawequal(L, -6, -5) && lua_rawequal(L, -4, -3) && ma != NULL && mb != NULL
           && ((starts(ma, NOT_JSON) && starts(mb, NOT_JSON)) || strcmp(ma, mb) == 0);
    lua_pop(L, 6);
    return same;
}

/* pushes fn (a registry ref) and the call's arguments; returns lua_pcall's code */
static int call_ref(int fn, const req *r, const input *in)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn);
    lua_pushstring(L, r->op);
    if (whole_status(r->status))
        lua_pushinteger(L, (lua_Integer)r->status);
    else
        lua_pushnumber(L, r->status);
    lua_pushlstring(L, in->body, in->len);
    switch (r->ask) {
    case ASK_INT: lua_pushinteger(L, r->asked); break;
    case ASK_STRING: lua_pushfstring(L, "%I", r->asked); break;
    case ASK_FLOAT: lua_pushnumber(L, (lua_Number)r->asked); break;
    default: lua_pushnil(L); break;
    }
    if (r->secrets)
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref_secrets);
    else
        lua_pushnil(L);
    return lua_pcall(L, ARGS, LUA_MULTRET, 0);
}

/* core.response(op, status, body [, asked [, secrets]]): leaves the results on the stack
 * above *base and returns how many there are. The old reader answers the same call: its
 * every result must be the same value (the same records, fields, numbers' subtypes, nulls),
 * or both a refusal (same_refusal). */
static int call(const req *r, const input *in, int *base)
{
    int rc, n, obase, on, i;
    *base = lua_gettop(L);
    rc = call_ref(ref_response, r, in);
    if (rc != LUA_OK) {
        fprintf(stderr, "fuzz: core.response('%s', %g, <%zu bytes>) raised: %s\n", r->op, r->status,
                in->len, lua_tostring(L, -1));
        REQUIRE(rc == LUA_OK);
    }
    n = lua_gettop(L) - *base;
    obase = lua_gettop(L);
    rc = call_ref(ref_old, r, in);
    REQUIRE(rc == LUA_OK);
    on = lua_gettop(L) - obase;
    old_calls++;
    if (n == 2 && on == 2 && same_refusal(*base + 1, obase + 1))
        i = n + 1;
    else
        for (i = 1; i <= n && i <= on; i++)
            if (!same_value(*base + i, obase + i, 0))
                break;
    if (on != n || i <= n) {
        fprintf(stderr, "fuzz: core.response('%s', %g, <%zu bytes>) and the old reader differ: "
                "%d results against %d, result %d: a %s against a %s\n", r->op, r->status, in->len, n, on,
                i, luaL_typename(L, *base + (i <= n ? i : 1)), luaL_typename(L, obase + (i <= on ? i : 1)));
        if (lua_istable(L, *base + 2) && lua_istable(L, obase + 2)) {
            lua_getfield(L, *base + 2, "message");
            lua_getfield(L, obase + 2, "message");
            fprintf(stderr, "fuzz: messages: new \"%s\", old \"%s\"\n", lua_tostring(L, -2),
                    lua_tostring(L, -1));
        }
        REQUIRE(0);
    }
    if (!lua_isnil(L, *base + 1))
        old_accepted++;
    lua_settop(L, obase);
    return n;
}

/* nil, { kind, message, sent = true } at base+1, base+2; returns the kind's first letter,
 * or 0 if not an error. The kind: "protocol" for a status that is no HTTP status, "http" for
 * one that is not 2xx, else "api" or "protocol". */
static int check_error(const req *r, int base, int nres)
{
    const char *kind, *msg;
    size_t mn;
    int k;
    if (!lua_isnil(L, base + 1)) {
        REQUIRE(r->status >= 200 && r->status <= 299);
        return 0;
    }
    REQUIRE(nres == 2 && lua_istable(L, base + 2));
    lua_getfield(L, base + 2, "kind");
    lua_getfield(L, base + 2, "message");
    lua_getfield(L, base + 2, "sent");
    REQUIRE(lua_type(L, -3) == LUA_TSTRING && lua_type(L, -2) == LUA_TSTRING);
    REQUIRE(lua_isboolean(L, -1) && lua_toboolean(L, -1)); /* an answer came: it was sent */
    kind = lua_tostring(L, -3);
    msg = lua_tolstring(L, -2, &mn);
    if (!whole_status(r->status))
        REQUIRE(strcmp(kind, "protocol") == 0);
    else if (r->status >= 200 && r->status <= 299)
        REQUIRE(strcmp(kind, "api") == 0 || strcmp(kind, "protocol") == 0);
    else
        REQUIRE(strcmp(kind, "http") == 0);
    REQUIRE(mn > 0);
    if (r->secrets && (contains(msg, mn, SECRET) || contains(msg, mn, SECRET2))) {
        fprintf(stderr, "fuzz: a secret in the message: %s\n", msg);
        REQUIRE(0);
    }
    k = kind[0];
    lua_pop(L, 3);
    return k;
}

typedef struct {
    size_t n;
    size_t cap;
    int *kinds;
    int64_t *ids;
} scanned;

static int on_record(void *ud, size_t index, int kind, int64_t id)
{
    scanned *s = ud;
    if (index < s->cap) {
        s->kinds[index] = kind;
        s->ids[index] = id;
    }
    s->n++;
    return 0;
}

/* records at t, n of them, ids above asked: cross-checked with the validating scanner's
 * reading of the raw body (pass 1 and 2). Where it accepts the document, every id the reader
 * gave is the one it reads as an integer: one rule, whatever cjson made of the number. */
static void cross_check(const input *in, int t, size_t n)
{
    scanned s;
    size_t count = 0;
    int rc;

    s.n = 0;
    s.cap = n;
    s.kinds = malloc((n + 1) * sizeof *s.kinds);
    s.ids = malloc((n + 1) * sizeof *s.ids);
    if (s.kinds == NULL || s.ids == NULL) {
        free(s.kinds);
        free(s.ids);
        return;
    }
    rc = ctc_json_scan_page(in->body, in->len, on_record, &s, &count, NULL, NULL);
    REQUIRE(rc == 0 || rc == -1);
    if (rc == 0) {
        size_t i;
        REQUIRE(count == n && s.n == n);
        for (i = 0; i < n; i++) {
            lua_Integer id;
            lua_rawgeti(L, t, (lua_Integer)i + 1);
            lua_getfield(L, -1, "id");
            id = lua_tointeger(L, -1);
            lua_pop(L, 2);
            if (s.kinds[i] != CTC_ID_INT || s.ids[i] != (int64_t)id) {
                fprintf(stderr, "fuzz: record %zu: the reader says id %lld, the scanner kind %d id %lld\n",
                        i + 1, (long long)id, s.kinds[i], (long long)s.ids[i]);
                REQUIRE(0);
            }
        }
    }
    free(s.kinds);
    free(s.ids);
}

/* the oracle's ctc_json_page_last on a page the reader accepted with n records, the last of
 * id `last`: that id (when there are records) and n */
static void check_page_last(const input *in, size_t n, lua_Integer last)
{
    int kind = CTC_ID_MISSING;
    int64_t id = 0;
    size_t count = 0;
    int rc = ctc_json_page_last(in->body, in->len, &kind, &id, &count);
    if (count != n || (n > 0 && (rc != 0 || kind != CTC_ID_INT || id != (int64_t)last))) {
        fprintf(stderr, "fuzz: page_last says rc %d kind %d id %lld count %zu; the reader read %zu records, "
                "the last id %lld\n", rc, kind, (long long)id, count, n, (long long)last);
        REQUIRE(0);
    }
}

/* a page at base+1 (records) and base+2 (next: nil, or the last id of a full page);
 * returns the number of records */
static size_t check_page(const input *in, int base, int nres, lua_Integer asked)
{
    int t = base + 1;
    size_t n, i;
    lua_Integer prev = asked < 0 ? 0 : asked, id = 0;

    REQUIRE(nres == 2 && lua_istable(L, t));
    n = (size_t)lua_rawlen(L, t);
    for (i = 1; i <= n; i++) {
        int rec;
        REQUIRE(lua_rawgeti(L, t, (lua_Integer)i) == LUA_TTABLE);
        rec = lua_gettop(L);
        lua_pushnil(L);
        while (lua_next(L, rec) != 0) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, ref_null);
            REQUIRE(!lua_rawequal(L, -1, -2));
            lua_pop(L, 2);
        }
        lua_getfield(L, rec, "id");
        REQUIRE(lua_isinteger(L, -1));
        id = lua_tointeger(L, -1);
        REQUIRE(id > prev);
        prev = id;
        lua_pop(L, 2);
    }
    if (n >= PAGE_SIZE)
        REQUIRE(lua_isinteger(L, base + 2) && lua_tointeger(L, base + 2) == id);
    else
        REQUIRE(lua_isnil(L, base + 2));
    check_page_last(in, n, id);
    if (n > 0)
        cross_check(in, t, n);
    return n;
}

static void check_op(const char *op, int secrets, const input *in)
{
    req r = { op, 200, ASK_NONE, 0, secrets };
    int base, nres = call(&r, in, &base);
    if (check_error(&r, base, nres) == 0) {
        REQUIRE(nres == 1);
        if (op[0] == 'b' && op[1] == 'i')
            REQUIRE(lua_isboolean(L, base + 1) && lua_toboolean(L, base + 1));
        else if (op[0] == 'd')
            REQUIRE(lua_type(L, base + 1) == LUA_TSTRING && lua_rawlen(L, base + 1) > 0);
        else
            REQUIRE(lua_type(L, base + 1) == LUA_TNUMBER);
    }
    lua_settop(L, base);
}

/* the same outcome: the same error, or pages of the same ids and the same next */
static void same_outcome(int a, int na, int b, int nb)
{
    size_t n, i;
    REQUIRE(na == nb);
    if (lua_isnil(L, a + 1)) {
        REQUIRE(lua_isnil(L, b + 1));
        lua_getfield(L, a + 2, "kind");
        lua_getfield(L, b + 2, "kind");
        lua_getfield(L, a + 2, "message");
        lua_getfield(L, b + 2, "message");
        REQUIRE(lua_rawequal(L, -4, -3) && lua_rawequal(L, -2, -1));
        lua_pop(L, 4);
        return;
    }
    n = (size_t)lua_rawlen(L, a + 1);
    REQUIRE(lua_rawlen(L, b + 1) == n && (na == 1 || lua_rawequal(L, a + 2, b + 2)));
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, a + 1, (lua_Integer)i);
        lua_getfield(L, -1, "id");
        lua_rawgeti(L, b + 1, (lua_Integer)i);
        lua_getfield(L, -1, "id");
        REQUIRE(lua_rawequal(L, -1, -3));
        lua_pop(L, 4);
    }
}

/* ---- the differential check: the same page with one more record whose id is past 2^53 ----
 * Such an id fits no double, so a reader with a path for ids a double holds and another for
 * the rest would take the second one on the copy. The answer on the copy must follow from the
 * answer on the page: the same records plus the new one, or the same refusal. */

/* In a document the validating scanner accepted: the offset of the ']' that closes the value of
 * the last top-level member named exactly "data" (no escapes) when it is an array, else 0. */
static size_t data_close(const char *b, size_t len)
{
    size_t p = 0, close = 0;
    while (p < len && b[p] != '{')
        p++;
    for (p++; p < len;) {
        size_t ks, ke, depth = 0;
        int is_data;
        while (p < len && b[p] != '"' && b[p] != '}')
            p++;
        if (p >= len || b[p] == '}')
            break;
        ks = ++p;
        while (p < len && b[p] != '"')
            p += b[p] == '\\' ? 2 : 1;
        ke = p++;
        is_data = ke - ks == 4 && memcmp(b + ks, "data", 4) == 0;
        if (memchr(b + ks, '\\', ke - ks) != NULL)
            return 0; /* an escaped name may be "data" too: not worth decoding here */
        while (p < len && b[p] != ':')
            p++;
        for (p++; p < len && (b[p] == ' ' || b[p] == '\t' || b[p] == '\n' || b[p] == '\r'); p++)
            ;
        if (is_data)
            close = 0;
        /* the value: up to the ',' or '}' that ends it at this level */
        for (; p < len; p++) {
            char ch = b[p];
            if (ch == '"') {
                for (p++; p < len && b[p] != '"'; p++)
                    if (b[p] == '\\')
                        p++;
            } else if (ch == '[' || ch == '{') {
                depth++;
            } else if (ch == ']' || ch == '}') {
                if (depth == 0)
                    break;
                if (--depth == 0 && is_data && ch == ']')
                    close = p;
            } else if (ch == ',' && depth == 0) {
                break;
            }
        }
        if (p < len && b[p] == '}')
            break;
        p++;
    }
    return close;
}

static const char *const FORCED[] = { "9223372036854775807", "\"9223372036854775807\"",
                                      "9007199254740993", "\"9007199254740993\"" };
static const int64_t FORCED_ID[] = { INT64_MAX, INT64_MAX, 9007199254740993LL, 9007199254740993LL };

/* records in the body by a plain cjson, or -1 */
static lua_Integer cjson_count(const char *body, size_t len)
{
    lua_Integer n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref_count);
    lua_pushlstring(L, body, len);
    REQUIRE(lua_pcall(L, 1, 1, 0) == LUA_OK);
    n = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return n;
}

/* a (na results) is the reader's answer on the body, without a cursor */
static void differential(const input *in, int a, int na)
{
    size_t count, count2, close, k = in->len % 4, fl, i, n;
    char *body;
    input in2;
    req r = { "records_page", 200, ASK_NONE, 0, 1 };
    int b, nb;

    lua_Integer cn = cjson_count(in->body, in->len);
    if (cn < 0)
        return;
    count = (size_t)cn;
    close = data_close(in->body, in->len);
    if (close == 0)
        return;
    fl = strlen(FORCED[k]);
    body = malloc(in->len + fl + 16);
    if (body == NULL)
        return;
    memcpy(body, in->body, close);
    in2.len = close;
    if (count > 0)
        body[in2.len++] = ',';
    memcpy(body + in2.len, "{\"id\":", 6);
    memcpy(body + in2.len + 6, FORCED[k], fl);
    in2.len += 6 + fl;
    body[in2.len++] = '}';
    memcpy(body + in2.len, in->body + close, in->len - close);
    in2.len += in->len - close;
    in2.body = body;
    /* the copy must be the page plus one record, by a JSON decoder's reading */
    cn = cjson_count(in2.body, in2.len);
    count2 = cn < 0 ? 0 : (size_t)cn;
    if (cn < 0 || count2 != count + 1) {
        free(body);
        return;
    }
    nb = call(&r, &in2, &b);
    diffs++;
    if (lua_isnil(L, a + 1)) {
        /* refused: the copy the same way (a body cjson refuses: refused again, as such) */
        const char *ka, *ma, *kb, *mb;
        REQUIRE(na == 2 && nb == 2 && lua_isnil(L, b + 1));
        lua_getfield(L, a + 2, "kind");
        lua_getfield(L, a + 2, "message");
        lua_getfield(L, b + 2, "kind");
        lua_getfield(L, b + 2, "message");
        ka = lua_tostring(L, -4);
        ma = lua_tostring(L, -3);
        kb = lua_tostring(L, -2);
        mb = lua_tostring(L, -1);
        REQUIRE(ka != NULL && kb != NULL && strcmp(ka, kb) == 0);
        if (starts(ma, "response body is not JSON"))
            REQUIRE(starts(mb, "response body is not JSON"));
        else if (ma == NULL || mb == NULL || strcmp(ma, mb) != 0) {
            fprintf(stderr, "fuzz: the page is refused with \"%s\", the page plus a record with id %s with \"%s\"\n",
                    ma ? ma : "?", FORCED[k], mb ? mb : "?");
            REQUIRE(0);
        }
        lua_settop(L, b);
        free(body);
        return;
    }
    /* accepted: the copy has the same records and the forced one, unless that one does not
     * advance past the page's last id */
    n = (size_t)lua_rawlen(L, a + 1);
    if (n > 0) {
        lua_Integer last;
        lua_rawgeti(L, a + 1, (lua_Integer)n);
        lua_getfield(L, -1, "id");
        last = lua_tointeger(L, -1);
        lua_pop(L, 2);
        if ((int64_t)last >= FORCED_ID[k]) {
            REQUIRE(nb == 2 && lua_isnil(L, b + 1));
            lua_getfield(L, b + 2, "message");
            REQUIRE(starts(lua_tostring(L, -1), "page ids do not advance"));
            lua_settop(L, b);
            free(body);
            return;
        }
    }
    if (!(nb == 2 && lua_istable(L, b + 1))) {
        lua_getfield(L, b + 2, "message");
        fprintf(stderr, "fuzz: the page is read (%zu records), the page plus a record with id %s is refused: %s\n",
                n, FORCED[k], lua_tostring(L, -1));
        REQUIRE(0);
    }
    REQUIRE(lua_rawlen(L, b + 1) == n + 1);
    for (i = 1; i <= n + 1; i++) {
        lua_rawgeti(L, b + 1, (lua_Integer)i);
        lua_getfield(L, -1, "id");
        if (i <= n) {
            lua_rawgeti(L, a + 1, (lua_Integer)i);
            lua_getfield(L, -1, "id");
            REQUIRE(lua_rawequal(L, -1, -3));
            lua_pop(L, 2);
        } else {
            REQUIRE(lua_isinteger(L, -1) && (int64_t)lua_tointeger(L, -1) == FORCED_ID[k]);
        }
        lua_pop(L, 2);
    }
    if (n + 1 >= PAGE_SIZE)
        REQUIRE(lua_isinteger(L, b + 2) && (int64_t)lua_tointeger(L, b + 2) == FORCED_ID[k]);
    else
        REQUIRE(lua_isnil(L, b + 2));
    check_page_last(&in2, n + 1, (lua_Integer)FORCED_ID[k]);
    accepted_diffs++;
    lua_settop(L, b);
    free(body);
}

static void check_records(const input *in)
{
    req r = { "records_page", 200, ASK_NONE, 0, 1 };
    int a, na, b, nb;

    na = call(&r, in, &a);
    if (check_error(&r, a, na) == 0)
        check_page(in, a, na, -1);
    differential(in, a, na);
    if (!lua_isnil(L, a + 1) && lua_rawlen(L, a + 1) > 0) {
        req rb = r, rc = r;
        int c, nc;
        lua_rawgeti(L, a + 1, 1);
        lua_getfield(L, -1, "id");
        rb.asked = lua_tointeger(L, -1) - 1;
        lua_pop(L, 2);
        /* just below the first id (as a string of digits): the same page; the first id
         * itself: refused */
        rb.ask = ASK_STRING;
        nb = call(&rb, in, &b);
        REQUIRE(check_error(&rb, b, nb) == 0);
        REQUIRE(check_page(in, b, nb, rb.asked) > 0);
        same_outcome(a, na, b, nb);
        rc.ask = ASK_INT;
        rc.asked = rb.asked + 1;
        nc = call(&rc, in, &c);
        REQUIRE(check_error(&rc, c, nc) == 'p');
        lua_settop(L, b);
    }
    /* no cursor is cursor 0 (here a float, as Lua 5.1 code would pass it) */
    r.ask = ASK_FLOAT;
    nb = call(&r, in, &b);
    if (check_error(&r, b, nb) == 0)
        check_page(in, b, nb, 0);
    same_outcome(a, na, b, nb);
    lua_settop(L, a);
}

/* a status that is not 2xx, and one that is no HTTP status at all, chosen by the length */
static void check_status(const input *in)
{
    static const double statuses[] = { 404, 429, 500, 503, 301, 101, 199, 300, 599 };
    static const double bad[] = { 0, 99, 600, 200.5, -200, 1e300, -1e300 };
    static const char *const ops[] = { "bind_seat", "dial", "balance", "records_page" };
    req r = { ops[in->len % 4], statuses[in->len % 9], ASK_NONE, 0, 1 };
    int base, nres = call(&r, in, &base);
    REQUIRE(check_error(&r, base, nres) == 'h');
    lua_settop(L, base);
    r.status = (in->len % 8 == 7) ? NAN : bad[in->len % 7];
    nres = call(&r, in, &base);
    REQUIRE(check_error(&r, base, nres) == 'p');
    lua_settop(L, base);
}

/* the input as a value inside a page: a field of two records (the field at a record's top
 * level, where nulls go and whole numbers become integers, and the same bytes again in the
 * second record, where the keys are reused), so every JSON value the fuzzer makes is decoded by
 * both readers and compared, not only those that are whole pages */
static void check_wrapped(const input *in)
{
    static const char head[] = "{\"meta\":{\"success\":true},\"data\":[{\"id\":1,\"v\":";
    static const char mid[] = ",\"w\":2},{\"id\":2,\"v\":";
    static const char tail[] = ",\"w\":null}]}";
    req r = { "records_page", 200, ASK_NONE, 0, 0 };
    size_t hn = sizeof head - 1, mn = sizeof mid - 1, tn = sizeof tail - 1;
    char *body = malloc(hn + 2 * in->len + mn + tn);
    input w;
    int base;
    if (body == NULL)
        return;
    memcpy(body, head, hn);
    memcpy(body + hn, in->body, in->len);
    memcpy(body + hn + in->len, mid, mn);
    memcpy(body + hn + in->len + mn, in->body, in->len);
    memcpy(body + hn + 2 * in->len + mn, tail, tn);
    w.body = body;
    w.len = hn + 2 * in->len + mn + tn;
    call(&r, &w, &base);
    lua_settop(L, base);
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in;
    int top;

    if (L == NULL)
        setup();
    in.body = (const char *)data;
    in.len = size;
    top = lua_gettop(L);
    /* One input in 16 under a collector that never rests (pause 1%, 10x work, 2-byte
     * steps): a string or table the reader used after dropping its last anchor would be
     * freed under it, and ASan would say so. The rest at Lua 5.4's defaults, for speed. */
    if (inputs % 16 == 0)
        lua_gc(L, LUA_GCINC, 1, 1000, 1);
    check_op("bind_seat", 0, &in); /* without secrets: the reader's other path */
    check_op("dial", 1, &in);
    check_op("balance", 1, &in);
    check_records(&in);
    check_wrapped(&in);
    check_status(&in);
    if (inputs % 16 == 0)
        lua_gc(L, LUA_GCINC, 200, 100, 13);
    REQUIRE(lua_gettop(L) == top);
    /* keep the heap flat; and after a full collection nothing the reader made is left */
    lua_gc(L, LUA_GCSTEP, 0);
    if (++inputs % 1024 == 0) {
        size_t kb;
        lua_gc(L, LUA_GCCOLLECT, 0);
        kb = (size_t)lua_gc(L, LUA_GCCOUNT, 0);
        if (kb > baseline_kb + 256) {
            fprintf(stderr, "fuzz: the Lua heap grew from %zu KiB to %zu KiB\n", baseline_kb, kb);
            REQUIRE(0);
        }
    }
    return 0;
}
