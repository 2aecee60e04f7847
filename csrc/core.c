/*
 * clicktocall.core: the C core of clicktocall. It builds requests and reads
 * responses without doing I/O of its own, so any transport (libcurl here,
 * cosockets in OpenResty, a spec's mock) can move the bytes and may yield.
 * luaopen_clicktocall_core is the only exported symbol; it sets no global and
 * may run again (busted reloads modules).
 */
#include <math.h>
#include <time.h>
#include "ctc.h"
#include "sigv4.h"
#include "parsers.h"

const char *const ctc_op_names[CTC_OP_COUNT + 1] = { "bind_seat", "dial", "balance", "records_page", NULL };

/* core.sleep(seconds): blocking backoff for plain Lua (OpenResty uses ngx.sleep) */
static int l_sleep(lua_State *L)
{
    lua_Number s = luaL_checknumber(L, 1);
    struct timespec ts;
    if (!(s > 0))
        return 0;
    if (s > 3600)
        s = 3600;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (lua_Number)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0)
        ; /* EINTR: sleep the rest */
    return 0;
}

/* core.now() -> monotonic seconds, for elapsed times and deadlines */
static int l_now(lua_State *L)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
    return 1;
}

/* core.http_date(s) -> Unix seconds | nil: an RFC 9110 date (Retry-After, Date) */
static int l_http_date(lua_State *L)
{
    size_t n;
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n) : NULL;
    int64_t epoch;
    if (s == NULL || ctc_http_date_parse(s, n, &epoch, NULL) != 0) {
        lua_pushnil(L);
        return 1;
    }
    ctc_push_id(L, epoch); /* an integer where Lua has them; always below 2^53 */
    return 1;
}

/* milliseconds as seconds: an integer when whole */
static void push_seconds(lua_State *L, long ms)
{
    if (ms % 1000 == 0)
        lua_pushinteger(L, (lua_Integer)(ms / 1000));
    else
        lua_pushnumber(L, (lua_Number)ms / 1000);
}

/* core.DEFAULTS: the transport's defaults in the units the options use */
static void push_defaults(lua_State *L)
{
    lua_createtable(L, 0, 3);
    push_seconds(L, CTC_DEFAULT_TIMEOUT_MS);
    lua_setfield(L, -2, "timeout");
    push_seconds(L, CTC_DEFAULT_CONNECT_TIMEOUT_MS);
    lua_setfield(L, -2, "connect_timeout");
    lua_pushinteger(L, CTC_DEFAULT_MAX_BODY);
    lua_setfield(L, -2, "max_body");
}

/* core.LIMITS: the fixed limits the core enforces (lua/clicktocall/limits.lua says what each is) */
static void push_limits(lua_State *L)
{
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, CTC_HEADER_BYTES);
    lua_setfield(L, -2, "header_bytes");
    lua_pushinteger(L, CTC_HEADER_LINES);
    lua_setfield(L, -2, "header_lines");
    lua_pushinteger(L, CTC_PAGE_SIZE);
    lua_setfield(L, -2, "page_size");
    lua_pushinteger(L, CTC_MAX_REDIRECTS);
    lua_setfield(L, -2, "redirects");
    lua_pushnumber(L, (lua_Number)CTC_TIME_MAX_EPOCH); /* a double holds it exactly on every Lua */
    lua_setfield(L, -2, "time_max");
    lua_pushnumber(L, CTC_EXACT_DOUBLE_MAX);
    lua_setfield(L, -2, "exact_double");
}

static const luaL_Reg core_functions[] = {
    { "request", ctc_l_request },
    { "normalize_phone", ctc_l_normalize_phone },
    { "format_time", ctc_l_format_time },
    { "parse_time", ctc_l_parse_time },
    { "base64", ctc_l_base64 },
    { "sleep", l_sleep },
    { "now", l_now },
    { "http_date", l_http_date },
    { NULL, NULL },
};

__attribute__((visibility("default"))) int luaopen_clicktocall_core(lua_State *L)
{
    lua_newtable(L);
    ctc_setfuncs(L, core_functions);
    ctc_open_response(L);
    ctc_open_curl(L);
    ctc_open_multi(L);
    ctc_open_sink(L);
    ctc_open_fsys(L);
    ctc_open_sigv4(L);
    lua_pushliteral(L, CTC_VERSION);
    lua_setfield(L, -2, "_VERSION");
    lua_createtable(L, CTC_OP_COUNT, 0);
    {
        int i;
        for (i = 0; i < CTC_OP_COUNT; i++) {
            lua_pushstring(L, ctc_op_names[i]);
            lua_rawseti(L, -2, i + 1);
        }
    }
    lua_setfield(L, -2, "OPS");
    push_defaults(L);
    lua_setfield(L, -2, "DEFAULTS");
    push_limits(L);
    lua_setfield(L, -2, "LIMITS");
    return 1;
}
