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
 * gives the same page, and the first id itself is refused. The Lua heap, after a full
 * collection now and then, stays where it started (the reader keeps nothing). One input in
 * 16 runs under a collector that never rests.
 */
#include <math.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "fuzz.h"
#include "../../parsers.h"

#ifndef CTC_FUZZ_CPATH
#define CTC_FUZZ_CPATH "/usr/lib/x86_64-linux-gnu/lua/5.4/?.so"
#endif

int luaopen_clicktocall_core(lua_State *L);

#define PAGE_SIZE 100
#define ARGS 5
/* letters and digits, 12 or more: no fixed sentence of the reader holds such a run, and
 * no id (digits only) can be one, so only text taken from the body could */
static const char SECRET[] = "Zk4Qm9Tx2Lp7Wr5N";
static const char SECRET2[] = "Q2xpY2tUb0NhbGw";

static lua_State *L;
static int ref_response, ref_secrets, ref_null;
static size_t baseline_kb;
static unsigned long inputs;

typedef struct {
    const char *body;
    size_t len;
} input;

static void setup(void)
{
    L = luaL_newstate();
    REQUIRE(L != NULL);
    luaL_openlibs(L);
    REQUIRE(luaL_dostring(L, "package.cpath = '" CTC_FUZZ_CPATH ";' .. package.cpath") == 0);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_clicktocall_core);
    lua_setfield(L, -2, "clicktocall.core");
    lua_pop(L, 2);
    if (luaL_dostring(L, "return require('clicktocall.core').response, require('cjson').null")
        != 0) {
        fprintf(stderr, "fuzz: cannot load the core: %s\n", lua_tostring(L, -1));
        REQUIRE(0);
    }
    ref_null = luaL_ref(L, LUA_REGISTRYINDEX);
    ref_response = luaL_ref(L, LUA_REGISTRYINDEX);
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

/* core.response(op, status, body [, asked [, secrets]]): leaves the results on the stack
 * above *base and returns how many there are. */
static int call(const req *r, const input *in, int *base)
{
    int rc;
    *base = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref_response);
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
    rc = lua_pcall(L, ARGS, LUA_MULTRET, 0);
    if (rc != LUA_OK) {
        fprintf(stderr, "fuzz: core.response('%s', %g, <%zu bytes>) raised: %s\n", r->op, r->status,
                in->len, lua_tostring(L, -1));
        REQUIRE(rc == LUA_OK);
    }
    return lua_gettop(L) - *base;
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

/* records at t, n of them, ids above asked: cross-checked with the C scanner's reading of
 * the raw body. cjson's leniencies (an id written 5.0 or 1e2, which cjson makes a whole
 * double, and documents the scanner refuses, e.g. nested deeper than 64) are tolerated
 * where the reader takes cjson's whole doubles below 2^53; a different id never is. */
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
            REQUIRE(s.kinds[i] != CTC_ID_MISSING);
            if (s.kinds[i] == CTC_ID_INT && s.ids[i] != (int64_t)id) {
                fprintf(stderr, "fuzz: record %zu: the reader says id %lld, the scanner %lld\n",
                        i + 1, (long long)id, (long long)s.ids[i]);
                REQUIRE(0);
            }
            if (s.kinds[i] == CTC_ID_OTHER)
                REQUIRE(id >= 0 && id < ((lua_Integer)1 << 53));
        }
    }
    free(s.kinds);
    free(s.ids);
}

/* a page at base+1 (records) and base+2 (next, which a page of null data leaves out);
 * returns the number of records */
static size_t check_page(const input *in, int base, int nres, lua_Integer asked)
{
    int t = base + 1;
    size_t n, i;
    lua_Integer prev = asked < 0 ? 0 : asked, id = 0;

    REQUIRE((nres == 2 || nres == 1) && lua_istable(L, t));
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
        REQUIRE(nres == 2 && lua_isinteger(L, base + 2) && lua_tointeger(L, base + 2) == id);
    else
        REQUIRE(nres == 1 || lua_isnil(L, base + 2));
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

static void check_records(const input *in)
{
    req r = { "records_page", 200, ASK_NONE, 0, 1 };
    int a, na, b, nb;

    na = call(&r, in, &a);
    if (check_error(&r, a, na) == 0 && check_page(in, a, na, -1) > 0) {
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
