/*
 * Lua 5.1 / LuaJIT / 5.2 / 5.3 / 5.4 compatibility for the clicktocall core.
 * Every shim has a ctc_ prefix so it can never clash with another module's
 * compat layer or with the real function of a newer Lua.
 */
#ifndef CTC_COMPAT_H
#define CTC_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM >= 502
#define ctc_rawlen(L, i) lua_rawlen((L), (i))
#define ctc_setfuncs(L, l) luaL_setfuncs((L), (l), 0)
#else
#define ctc_rawlen(L, i) lua_objlen((L), (i))
/* 5.1 has luaL_register, which also creates a global; this one does not. */
static inline void ctc_setfuncs(lua_State *L, const luaL_Reg *l)
{
    for (; l->name != NULL; l++) {
        lua_pushcfunction(L, l->func);
        lua_setfield(L, -2, l->name);
    }
}
#endif

#if LUA_VERSION_NUM >= 504
#define ctc_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 0)
#else
#define ctc_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif

#if LUA_VERSION_NUM >= 503
#define CTC_HAS_INTEGERS 1
#else
#define CTC_HAS_INTEGERS 0
#endif

#if LUA_VERSION_NUM >= 502
#define ctc_testudata(L, i, n) luaL_testudata((L), (i), (n))
#else
static inline void *ctc_testudata(lua_State *L, int i, const char *tname)
{
    void *p = lua_touserdata(L, i);
    if (p == NULL || !lua_getmetatable(L, i))
        return NULL;
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2))
        p = NULL;
    lua_pop(L, 2);
    return p;
}
#endif

#endif
