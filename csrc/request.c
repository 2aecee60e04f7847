/*
 * Request building: turns one of the provider's four calls and its arguments
 * into { method, url, headers, body }. Every argument is validated here, before
 * anything could be sent; a bad one returns nil and a sentence naming the field.
 * The body is compact JSON with the provider's own field names and spellings
 * ("setingNbr", "starTime"), in the order of the provider's examples.
 */
#include <math.h>
#include <string.h>
#include "ctc.h"
#include "parsers.h"

static const char *const op_paths[CTC_OP_COUNT] = {
    "/management/add/setingphone", "/rest/voiceCall/api",
    "/management/customer/isallow", "/call/record/voice",
};

typedef struct text {
    const char *s;
    size_t len;
} text;

/* ---- validation of single values ---- */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* NULL when s[0..n) is well-formed UTF-8 with no control character */
static const char *check_text(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need, k;
        unsigned min, cp;
        if (c < 0x20 || c == 0x7f)
            return "holds a control character";
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) { need = 1; min = 0x80; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { need = 2; min = 0x800; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { need = 3; min = 0x10000; cp = c & 0x07; }
        else return "is not valid UTF-8";
        if (n - i <= need)
            return "is not valid UTF-8";
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return "is not valid UTF-8";
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return "is not valid UTF-8";
        i += need + 1;
    }
    return NULL;
}

/* A required, trimmed, non-empty text field. Leaves nothing on the stack;
 * the string stays alive because the argument table holds it. */
static const char *get_text(lua_State *L, int t, const char *name, text *out)
{
    const char *s;
    size_t n;
    lua_getfield(L, t, name);
    if (lua_type(L, -1) != LUA_TSTRING) {
        int missing = lua_isnil(L, -1);
        lua_pop(L, 1);
        return missing ? "is missing" : "must be a string";
    }
    s = lua_tolstring(L, -1, &n);
    lua_pop(L, 1);
    while (n > 0 && is_space((unsigned char)*s)) { s++; n--; }
    while (n > 0 && is_space((unsigned char)s[n - 1])) n--;
    if (n == 0)
        return "is empty";
    out->s = s;
    out->len = n;
    return check_text((const unsigned char *)s, n);
}

static const char *get_phone(lua_State *L, int t, const char *name, text cc,
                             char out[CTC_PHONE_MAX])
{
    text raw;
    const char *why = NULL;
    lua_getfield(L, t, name);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_pop(L, 1);
        return "must be a string (a number loses a leading 0 or +)";
    }
    lua_pop(L, 1);
    why = get_text(L, t, name, &raw);
    if (why != NULL && strcmp(why, "holds a control character") != 0)
        return why;
    if (ctc_phone_normalize(raw.s, raw.len, cc.s, cc.len, out, CTC_PHONE_MAX, &why) != 0)
        return why;
    return NULL;
}

/* A time is "yyyy-MM-dd HH:mm:ss" (provider clock, UTC+8) or Unix seconds. */
static const char *to_epoch(lua_State *L, int idx, int64_t *epoch)
{
    const char *why = NULL;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, idx);
        if (v != v || v == HUGE_VAL || v == -HUGE_VAL)
            return "must be a finite number of Unix seconds";
        if (v < 0 || v > (lua_Number)CTC_TIME_MAX_EPOCH)
            return "is out of range (Unix seconds from 1970 to 9999)";
        *epoch = (int64_t)floor(v);
        return NULL;
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (ctc_time_parse(s, n, epoch, &why) != 0)
            return why;
        return NULL;
    }
    return lua_isnil(L, idx) ? "is missing"
                             : "must be a \"yyyy-MM-dd HH:mm:ss\" string or Unix seconds";
}

static const char *get_time(lua_State *L, int t, const char *name, int64_t *epoch)
{
    const char *why;
    lua_getfield(L, t, name);
    why = to_epoch(L, -1, epoch);
    lua_pop(L, 1);
    return why;
}

/* ---- JSON body writing (values were validated: no control characters) ---- */

static void add_json_string(luaL_Buffer *b, const char *s, size_t n)
{
    size_t i, start = 0;
    luaL_addchar(b, '"');
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            luaL_addlstring(b, s + start, i - start);
            luaL_addchar(b, '\\');
            start = i;
        }
    }
    luaL_addlstring(b, s + start, n - start);
    luaL_addchar(b, '"');
}

static void add_member(luaL_Buffer *b, int first, const char *name, const char *s, size_t n)
{
    if (!first)
        luaL_addchar(b, ',');
    add_json_string(b, name, strlen(name));
    luaL_addchar(b, ':');
    add_json_string(b, s, n);
}

static void add_time_member(luaL_Buffer *b, const char *name, int64_t epoch)
{
    char when[32];
    const char *why;
    /* to_epoch() only accepts epochs ctc_time_format can write */
    if (ctc_time_format(epoch, when, sizeof when, &why) != 0)
        when[0] = '\0';
    add_member(b, 0, name, when, strlen(when));
}

static void add_int_member(luaL_Buffer *b, const char *name, int64_t v)
{
    char digits[CTC_I64_LEN];
    add_json_string(b, name, strlen(name));
    luaL_addchar(b, ':');
    luaL_addstring(b, ctc_i64_str(digits, v));
}

/* ---- the request table ---- */

static void set_string(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

/* Pushes { method, url, headers, body } with the body on top of the stack. */
static void push_request(lua_State *L, int cfg, int op)
{
    lua_createtable(L, 0, 5);
    lua_insert(L, -2);             /* request table below the body */
    lua_setfield(L, -2, "body");
    set_string(L, "method", "POST");
    lua_getfield(L, cfg, "base_url");
    lua_pushstring(L, op_paths[op]);
    lua_concat(L, 2);
    lua_setfield(L, -2, "url");
    lua_createtable(L, 0, 4);
    set_string(L, "Content-Type", "application/json");
    set_string(L, "Accept", "application/json");
    lua_getfield(L, cfg, "authorization");
    lua_setfield(L, -2, "Authorization");
    lua_getfield(L, cfg, "user_agent");
    lua_setfield(L, -2, "User-Agent");
    lua_setfield(L, -2, "headers");
    /* a dial must never go twice: a transport may resend anything else */
    lua_pushboolean(L, op != CTC_OP_DIAL);
    lua_setfield(L, -2, "resend_safe");
}

/* The failure names the field twice: in the sentence, and as err.field for a program (a web form
 * marks that input); the caller in Lua puts the call's name in front ("dial: caller is missing"). */
static int arg_fail(lua_State *L, const char *field, const char *why)
{
    /* "is missing" reads on from the field name; a parser's sentence follows a colon */
    int phrase = strncmp(why, "is ", 3) == 0 || strncmp(why, "must ", 5) == 0 ||
                 strncmp(why, "holds ", 6) == 0;
    if (strcmp(field, "user_data") == 0 && strcmp(why, "is missing") == 0)
        why = "is missing (give it to clicktocall.new{} or to the call)";
    ctc_push_fail(L, "argument", 0, phrase ? "%s %s" : "%s: %s", field, why);
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
    return 2;
}

/*
 * core.request(op, config, args) -> request, asked, parts | nil, err
 * err: { kind = "argument", message = "caller: phone number ...", field = "caller", sent = false }
 * asked: the cursor asked for (records_page), else nil; parts (dial only):
 * { caller, callee, seat } as sent (normalized numbers, trimmed seat).
 * config: { base_url, authorization, user_agent, country_code, user_data }
 * (checked when the client was made); args: the call's own table.
 */
int ctc_l_request(lua_State *L)
{
    int op = luaL_checkoption(L, 1, NULL, ctc_op_names);
    text user_data, seat = { NULL, 0 }, cc = { "86", 2 };
    char phone_a[CTC_PHONE_MAX], phone_b[CTC_PHONE_MAX];
    int64_t t0 = 0, t1 = 0, max_id = 0;
    const char *why;
    luaL_Buffer b;

    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 2, "country_code");
    if (lua_type(L, -1) == LUA_TSTRING)
        cc.s = lua_tolstring(L, -1, &cc.len);
    lua_pop(L, 1);

    /* a call's own user_data wins over the client's */
    lua_getfield(L, 3, "user_data");
    why = get_text(L, lua_isnil(L, -1) ? 2 : 3, "user_data", &user_data);
    lua_pop(L, 1);
    if (why != NULL)
        return arg_fail(L, "user_data", why);

    switch (op) {
    case CTC_OP_BIND_SEAT:
        if ((why = get_text(L, 3, "seat", &seat)) != NULL)
            return arg_fail(L, "seat", why);
        if ((why = get_phone(L, 3, "phone", cc, phone_a)) != NULL)
            return arg_fail(L, "phone", why);
        break;
    case CTC_OP_DIAL:
        if ((why = get_phone(L, 3, "caller", cc, phone_a)) != NULL)
            return arg_fail(L, "caller", why);
        if ((why = get_phone(L, 3, "callee", cc, phone_b)) != NULL)
            return arg_fail(L, "callee", why);
        if ((why = get_text(L, 3, "seat", &seat)) != NULL)
            return arg_fail(L, "seat", why);
        break;
    case CTC_OP_RECORDS_PAGE:
        if ((why = get_time(L, 3, "start_time", &t0)) != NULL)
            return arg_fail(L, "start_time", why);
        if ((why = get_time(L, 3, "end_time", &t1)) != NULL)
            return arg_fail(L, "end_time", why);
        if (t0 > t1)
            return arg_fail(L, "start_time", "is after end_time");
        lua_getfield(L, 3, "max_id");
        why = lua_isnil(L, -1) ? NULL : ctc_to_id(L, -1, &max_id);
        lua_pop(L, 1);
        if (why != NULL)
            return arg_fail(L, "max_id", why);
        break;
    default:
        break;
    }

    /* nothing below touches the stack except through the buffer */
    luaL_buffinit(L, &b);
    luaL_addchar(&b, '{');
    switch (op) {
    case CTC_OP_BIND_SEAT:
        add_member(&b, 1, "userData", user_data.s, user_data.len);
        add_member(&b, 0, "setingNbr", seat.s, seat.len);
        add_member(&b, 0, "userPhone", phone_a, strlen(phone_a));
        break;
    case CTC_OP_DIAL:
        add_member(&b, 1, "callerNbr", phone_a, strlen(phone_a));
        add_member(&b, 0, "calleeNbr", phone_b, strlen(phone_b));
        add_member(&b, 0, "userData", user_data.s, user_data.len);
        add_member(&b, 0, "setingNbr", seat.s, seat.len);
        break;
    case CTC_OP_BALANCE:
        add_member(&b, 1, "userData", user_data.s, user_data.len);
        break;
    default:
        add_int_member(&b, "maxId", max_id);
        add_time_member(&b, "starTime", t0);
        add_time_member(&b, "endTime", t1);
        add_member(&b, 0, "userData", user_data.s, user_data.len);
        break;
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
    push_request(L, 2, op);
    if (op == CTC_OP_RECORDS_PAGE) {
        /* the reader needs the cursor asked for, exactly */
        ctc_push_id(L, max_id);
        return 2;
    }
    if (op == CTC_OP_DIAL) {
        lua_pushnil(L); /* no cursor */
        lua_createtable(L, 0, 3);
        lua_pushstring(L, phone_a);
        lua_setfield(L, -2, "caller");
        lua_pushstring(L, phone_b);
        lua_setfield(L, -2, "callee");
        lua_pushlstring(L, seat.s, seat.len);
        lua_setfield(L, -2, "seat");
        return 3;
    }
    return 1;
}

/* core.normalize_phone(s [, country_code]) -> "+86..." | nil, message */
int ctc_l_normalize_phone(lua_State *L)
{
    size_t n, ccn = 2;
    const char *s, *cc = "86", *why = NULL;
    char out[CTC_PHONE_MAX];
    if (lua_type(L, 1) != LUA_TSTRING) {
        lua_pushnil(L);
        lua_pushfstring(L, "phone number must be a string, got %s", luaL_typename(L, 1));
        return 2;
    }
    s = lua_tolstring(L, 1, &n);
    if (!lua_isnoneornil(L, 2)) {
        if (lua_type(L, 2) != LUA_TSTRING) {
            lua_pushnil(L);
            lua_pushstring(L, "country code must be a string of digits");
            return 2;
        }
        cc = lua_tolstring(L, 2, &ccn);
    }
    if (ctc_phone_normalize(s, n, cc, ccn, out, sizeof out, &why) != 0) {
        lua_pushnil(L);
        lua_pushstring(L, why);
        return 2;
    }
    lua_pushstring(L, out);
    return 1;
}

/* nil and a sentence about a time: the parser's own may begin with "time" already ("time is too short")
 * or name a part of it ("month must be 01-12") */
static int time_fail(lua_State *L, const char *why)
{
    lua_pushnil(L);
    if (strncmp(why, "time ", 5) == 0)
        lua_pushstring(L, why);
    else if (strncmp(why, "is ", 3) == 0 || strncmp(why, "must ", 5) == 0)
        lua_pushfstring(L, "time %s", why);
    else
        lua_pushfstring(L, "time: %s", why);
    return 2;
}

/* core.format_time(string | unix seconds) -> "yyyy-MM-dd HH:mm:ss" (UTC+8) | nil, message */
int ctc_l_format_time(lua_State *L)
{
    int64_t epoch;
    char out[32];
    const char *why = to_epoch(L, 1, &epoch);
    if (why == NULL && ctc_time_format(epoch, out, sizeof out, &why) == 0) {
        lua_pushstring(L, out);
        return 1;
    }
    return time_fail(L, why);
}

/* core.parse_time("yyyy-MM-dd HH:mm:ss") -> Unix seconds (the string read in UTC+8) | nil, message.
 * The Lua side (jobs, the command line) has no date arithmetic of its own: it asks here. */
int ctc_l_parse_time(lua_State *L)
{
    int64_t epoch;
    const char *why = "must be a \"yyyy-MM-dd HH:mm:ss\" string";
    if (lua_type(L, 1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, 1, &n);
        if (ctc_time_parse(s, n, &epoch, &why) == 0) {
            lua_pushinteger(L, (lua_Integer)epoch);
            return 1;
        }
    }
    return time_fail(L, why);
}
