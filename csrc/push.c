/*
 * What the core pushes to Lua in more than one file: the one shape of a
 * failure (nil plus an error table, as a transport returns and errors.lua
 * reads), and hex.
 */
#include <stdarg.h>
#include "ctc.h"

int ctc_push_fail_top(lua_State *L, const char *kind, int sent)
{
    lua_createtable(L, 0, 5);
    lua_insert(L, -2);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushboolean(L, sent);
    lua_setfield(L, -2, "sent");
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
}

int ctc_push_fail(lua_State *L, const char *kind, int sent, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return ctc_push_fail_top(L, kind, sent);
}

void ctc_push_hex(lua_State *L, const unsigned char *d, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char out[128];
    size_t i;
    for (i = 0; i < n && 2 * i + 1 < sizeof out; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    lua_pushlstring(L, out, 2 * i);
}
