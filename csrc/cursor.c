/*
 * Cursors (record ids) between C and Lua: exact int64 values whatever the Lua
 * version, and printed exactly in messages (never through a double).
 */
#include <math.h>
#include "ctc.h"

const char *ctc_i64_str(char buf[CTC_I64_LEN], int64_t v)
{
    size_t i = CTC_I64_LEN - 1;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    buf[i] = '\0';
    do {
        buf[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        buf[--i] = '-';
    return &buf[i];
}

void ctc_push_id(lua_State *L, int64_t id)
{
#if CTC_HAS_INTEGERS
    lua_pushinteger(L, (lua_Integer)id);
#else
    /* past CTC_EXACT_DOUBLE_MAX, keep the digits */
    if (id <= (int64_t)CTC_EXACT_DOUBLE_MAX && id >= -(int64_t)CTC_EXACT_DOUBLE_MAX) {
        lua_pushnumber(L, (lua_Number)id);
    } else {
        char digits[CTC_I64_LEN];
        lua_pushstring(L, ctc_i64_str(digits, id));
    }
#endif
}

const char *ctc_to_id(lua_State *L, int idx, int64_t *id)
{
    if (lua_type(L, idx) == LUA_TNUMBER) {
#if CTC_HAS_INTEGERS
        if (lua_isinteger(L, idx)) {
            lua_Integer v = lua_tointeger(L, idx);
            if (v < 0)
                return "must not be negative";
            *id = (int64_t)v;
            return NULL;
        }
#endif
        {
            lua_Number v = lua_tonumber(L, idx);
            if (v != v || v != floor(v))
                return "must be an integer";
            if (v < 0)
                return "must not be negative";
            if (v > CTC_EXACT_DOUBLE_MAX)
                return "is too large for a number; pass it as a string of digits";
            *id = (int64_t)v;
            return NULL;
        }
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n, i;
        const char *s = lua_tolstring(L, idx, &n);
        uint64_t v = 0;
        if (n == 0 || n > 19)
            return "must be a string of 1 to 19 digits";
        for (i = 0; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return "must be a string of digits";
            v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (v > (uint64_t)INT64_MAX)
            return "is too large";
        *id = (int64_t)v;
        return NULL;
    }
    return "must be an integer";
}

