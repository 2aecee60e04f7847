/*
 * Request building: turns one of the provider's four calls and its arguments
 * into { method, url, headers, body }. Every argument is validated here, before
 * anything could be sent; a bad one returns nil and an "argument" error naming the field.
 * The body is compact JSON with the provider's own field names and spellings
 * ("setingNbr", "starTime"), in the order of the provider's examples.
 */
#include <math.h>
#include <stdarg.h>
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

/* nil, { kind = "argument", message, field } (field NULL: none); the message from fmt. Phrases
 * read on from the field's name ("caller is missing"), a parser's sentence follows a colon
 * ("caller: phone number has 5 digits; ..."): each caller knows which it has. */
static int arg_fail(lua_State *L, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    ctc_push_fail_top(L, "argument", 0);
    if (field != NULL) {
        lua_pushstring(L, field);
        lua_setfield(L, -2, "field");
    }
    return 2;
}

enum { TEXT_OK, TEXT_CONTROL, TEXT_UTF8 };

/* TEXT_OK when s[0..n) is well-formed UTF-8 with no control character */
static int check_text(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need, k;
        unsigned min, cp;
        if (c < 0x20 || c == 0x7f)
            return TEXT_CONTROL;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) { need = 1; min = 0x80; cp = c & 0x1f; }
        else if (c >= 0xe0 && c <= 0xef) { need = 2; min = 0x800; cp = c & 0x0f; }
        else if (c >= 0xf0 && c <= 0xf4) { need = 3; min = 0x10000; cp = c & 0x07; }
        else return TEXT_UTF8;
        if (n - i <= need)
            return TEXT_UTF8;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return TEXT_UTF8;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return TEXT_UTF8;
        i += need + 1;
    }
    return TEXT_OK;
}

/* A required, trimmed, non-empty string field, its value on top (popped): 0, or 2 (the failure
 * pushed). missing: the phrase for an absent field. Leaves nothing else on the stack; the string
 * stays alive because the argument table holds it. */
static int top_string(lua_State *L, const char *name, const char *missing, text *out)
{
    const char *s;
    size_t n;
    if (lua_type(L, -1) != LUA_TSTRING) {
        int absent = lua_isnil(L, -1);
        lua_pop(L, 1);
        return arg_fail(L, name, "%s %s", name, absent ? missing : "must be a string");
    }
    s = lua_tolstring(L, -1, &n);
    lua_pop(L, 1);
    while (n > 0 && is_space((unsigned char)*s)) { s++; n--; }
    while (n > 0 && is_space((unsigned char)s[n - 1])) n--;
    if (n == 0)
        return arg_fail(L, name, "%s is empty", name);
    out->s = s;
    out->len = n;
    return 0;
}

/* the same for the field name of the table at t */
static int get_string(lua_State *L, int t, const char *name, const char *missing, text *out)
{
    lua_getfield(L, t, name);
    return top_string(L, name, missing, out);
}

static int text_fail(lua_State *L, const char *name, int bad)
{
    return arg_fail(L, name, "%s %s", name,
                    bad == TEXT_CONTROL ? "holds a control character" : "is not valid UTF-8");
}

/* a text field (get_string) of valid UTF-8 without control characters */
static int get_text(lua_State *L, int t, const char *name, const char *missing, text *out)
{
    int bad, rc = get_string(L, t, name, missing, out);
    if (rc != 0)
        return rc;
    bad = check_text((const unsigned char *)out->s, out->len);
    return bad == TEXT_OK ? 0 : text_fail(L, name, bad);
}

/* the sentence of a phone parser's refusal, pushed */
static const char *push_phone_why(lua_State *L, const ctc_phone_why *w)
{
    if (w->reason == CTC_PHONE_DIGITS && w->detail == 1)
        return lua_pushfstring(L, "phone number has 1 digit; a Chinese mobile number has 11");
    return lua_pushfstring(L, ctc_phone_sentences[w->reason], w->detail);
}

static int get_phone(lua_State *L, int t, const char *name, text cc, char out[CTC_PHONE_MAX])
{
    text raw;
    ctc_phone_why w;
    int bad, rc;
    lua_getfield(L, t, name);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        lua_pop(L, 1);
        return arg_fail(L, name, "%s must be a string (a number loses a leading 0 or +)", name);
    }
    if ((rc = top_string(L, name, "is missing", &raw)) != 0)
        return rc;
    /* a control character is the phone rules' to name */
    bad = check_text((const unsigned char *)raw.s, raw.len);
    if (bad == TEXT_UTF8)
        return text_fail(L, name, bad);
    if (ctc_phone_normalize(raw.s, raw.len, cc.s, cc.len, out, CTC_PHONE_MAX, &w) != 0)
        return arg_fail(L, name, "%s: %s", name, push_phone_why(L, &w));
    return 0;
}

/* The sentence of a time parser's refusal: its reason's, and where the shape breaks, the byte. */
static const char *push_time_why(lua_State *L, const ctc_time_why *w)
{
    const char *s = ctc_time_sentences[w->reason];
    if (w->reason != CTC_TIME_SHAPE)
        return lua_pushfstring(L, "%s", s);
    if (w->byte >= 32 && w->byte < 127)
        return lua_pushfstring(L, "%s ('%c' at character %d)", s, (int)w->byte, (int)w->at + 1);
    return lua_pushfstring(L, "%s (a control or non-ASCII byte at character %d)", s, (int)w->at + 1);
}

/* A time is "yyyy-MM-dd HH:mm:ss" (provider clock, UTC+8) or Unix seconds: 0, or 2 with the
 * failure about subject (a field, or "time" for the bindings, field NULL) pushed. */
static int to_epoch(lua_State *L, int idx, const char *subject, const char *field, int64_t *epoch)
{
    ctc_time_why w;
    if (lua_type(L, idx) == LUA_TNUMBER) {
        lua_Number v = lua_tonumber(L, idx);
        if (v != v || v == HUGE_VAL || v == -HUGE_VAL)
            return arg_fail(L, field, "%s must be a finite number of Unix seconds", subject);
        if (v < 0 || v > (lua_Number)CTC_TIME_MAX_EPOCH)
            return arg_fail(L, field, "%s is out of range (Unix seconds from 1970 to 9999)", subject);
        *epoch = (int64_t)floor(v);
        return 0;
    }
    if (lua_type(L, idx) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, idx, &n);
        if (ctc_time_parse(s, n, epoch, &w) == 0)
            return 0;
        /* "time is too short" needs no "time: " in front */
        if (field == NULL && w.reason < CTC_TIME_YEAR)
            return arg_fail(L, NULL, "%s", push_time_why(L, &w));
        return arg_fail(L, field, "%s: %s", subject, push_time_why(L, &w));
    }
    return arg_fail(L, field, lua_isnil(L, idx) ? "%s is missing"
                              : "%s must be a \"yyyy-MM-dd HH:mm:ss\" string or Unix seconds", subject);
}

static int get_time(lua_State *L, int t, const char *name, int64_t *epoch)
{
    int rc;
    lua_getfield(L, t, name);
    rc = to_epoch(L, lua_gettop(L), name, name, epoch);
    if (rc == 0)
        lua_pop(L, 1);
    return rc;
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
    /* to_epoch() only accepts epochs ctc_time_format can write */
    if (ctc_time_format(epoch, when, sizeof when, NULL) != 0)
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

/* Pushes base_url .. path: kept in config (field url_key) while base_url is what it was made from,
 * so a client's calls share one string instead of concatenating a new one each. */
static void push_url(lua_State *L, int cfg, int op, int share)
{
    static const char *const url_keys[CTC_OP_COUNT] = { "url_bind_seat", "url_dial", "url_balance",
                                                        "url_records_page" };
    size_t bn, un, pn = strlen(op_paths[op]);
    const char *base, *url;
    if (share) { /* a client's own config: its base_url never changes */
        lua_getfield(L, cfg, url_keys[op]);
        if (lua_type(L, -1) == LUA_TSTRING)
            return;
        lua_pop(L, 1);
    }
    lua_getfield(L, cfg, "base_url");
    base = lua_tolstring(L, -1, &bn);
    lua_getfield(L, cfg, url_keys[op]);
    url = lua_tolstring(L, -1, &un);
    if (base != NULL && url != NULL && un == bn + pn && memcmp(url, base, bn) == 0) {
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    lua_pushstring(L, op_paths[op]);
    lua_concat(L, 2);
    lua_pushvalue(L, -1);
    lua_setfield(L, cfg, url_keys[op]);
}

/* Pushes the headers table of an API call. A config with share_headers (a client whose transport
 * never changes nor keeps a request: options.lua) keeps one, made on its first call, for all. */
static void push_headers(lua_State *L, int cfg, int share)
{
    lua_createtable(L, 0, 4);
    set_string(L, "Content-Type", "application/json");
    set_string(L, "Accept", "application/json");
    lua_getfield(L, cfg, "authorization");
    lua_setfield(L, -2, "Authorization");
    lua_getfield(L, cfg, "user_agent");
    lua_setfield(L, -2, "User-Agent");
    if (share) {
        lua_pushvalue(L, -1);
        lua_setfield(L, cfg, "shared_headers");
    }
}

/* Pushes { method, url, headers, body } with the body on top of the stack. */
static void push_request(lua_State *L, int cfg, int op)
{
    int share, shared;
    lua_getfield(L, cfg, "shared_headers"); /* made by the first call of a config with share_headers */
    shared = lua_istable(L, -1);
    if (!shared) {
        lua_pop(L, 1);
        lua_getfield(L, cfg, "share_headers");
    }
    share = lua_toboolean(L, -1);
    lua_pop(L, 1);
    /* room for the five set here and the four exchange.lua adds (timeouts, max_body, want_headers);
     * a dial through a transport that shares headers has no want_headers (exchange.lua), and eight
     * fields take half the memory of nine */
    lua_createtable(L, 0, share ? 8 : 9);
    lua_insert(L, -2);             /* request table below the body */
    lua_setfield(L, -2, "body");
    lua_pushliteral(L, "POST");
    lua_setfield(L, -2, "method");
    push_url(L, cfg, op, share);
    lua_setfield(L, -2, "url");
    if (shared)
        lua_getfield(L, cfg, "shared_headers");
    else
        push_headers(L, cfg, share);
    lua_setfield(L, -2, "headers");
    /* a dial must never go twice: a transport may resend anything else */
    lua_pushboolean(L, op != CTC_OP_DIAL);
    lua_setfield(L, -2, "resend_safe");
}

/* Pushes a dial's body; the values were checked (no control characters). The usual one, with
 * nothing to escape, is written in one piece; anything longer or with a quote or backslash goes
 * through the buffer. */
static void push_dial_body(lua_State *L, const char *caller, const char *callee, text user_data, text seat)
{
    char out[256];
    size_t an = strlen(caller), bn = strlen(callee);
#define PUT(s, n) (memcpy(out + k, (s), (n)), k += (n))
#define PUTS(lit) PUT(lit, sizeof lit - 1)
    if (an + bn + user_data.len + seat.len + 64 <= sizeof out
        && !memchr(user_data.s, '"', user_data.len) && !memchr(user_data.s, '\\', user_data.len)
        && !memchr(seat.s, '"', seat.len) && !memchr(seat.s, '\\', seat.len)) {
        size_t k = 0;
        PUTS("{\"callerNbr\":\"");
        PUT(caller, an);
        PUTS("\",\"calleeNbr\":\"");
        PUT(callee, bn);
        PUTS("\",\"userData\":\"");
        PUT(user_data.s, user_data.len);
        PUTS("\",\"setingNbr\":\"");
        PUT(seat.s, seat.len);
        PUTS("\"}");
        lua_pushlstring(L, out, k);
    } else {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addchar(&b, '{');
        add_member(&b, 1, "callerNbr", caller, an);
        add_member(&b, 0, "calleeNbr", callee, bn);
        add_member(&b, 0, "userData", user_data.s, user_data.len);
        add_member(&b, 0, "setingNbr", seat.s, seat.len);
        luaL_addchar(&b, '}');
        luaL_pushresult(&b);
    }
#undef PUTS
#undef PUT
}

/*
 * core.request(op, config, args [, parts]) -> request, asked [, caller, callee, seat] | nil, err
 * err: { kind = "argument", message = "caller: phone number ...", field = "caller", sent = false }
 * asked: the cursor asked for (records_page), else nil; dial only: caller,
 * callee, seat as sent (normalized numbers, trimmed seat), as values (no table), unless parts is false.
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
    int rc;
    luaL_Buffer b;

    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_getfield(L, 2, "country_code");
    if (lua_type(L, -1) == LUA_TSTRING)
        cc.s = lua_tolstring(L, -1, &cc.len);
    lua_pop(L, 1);

    /* a call's own user_data wins over the client's */
    lua_getfield(L, 3, "user_data");
    rc = get_text(L, lua_isnil(L, -1) ? 2 : 3, "user_data",
                  "is missing (give it to clicktocall.new{} or to the call)", &user_data);
    if (rc != 0)
        return rc;
    lua_pop(L, 1);

    switch (op) {
    case CTC_OP_BIND_SEAT:
        if ((rc = get_text(L, 3, "seat", "is missing", &seat)) != 0
            || (rc = get_phone(L, 3, "phone", cc, phone_a)) != 0)
            return rc;
        break;
    case CTC_OP_DIAL:
        if ((rc = get_phone(L, 3, "caller", cc, phone_a)) != 0
            || (rc = get_phone(L, 3, "callee", cc, phone_b)) != 0
            || (rc = get_text(L, 3, "seat", "is missing", &seat)) != 0)
            return rc;
        break;
    case CTC_OP_RECORDS_PAGE:
        if ((rc = get_time(L, 3, "start_time", &t0)) != 0 || (rc = get_time(L, 3, "end_time", &t1)) != 0)
            return rc;
        if (t0 > t1)
            return arg_fail(L, "start_time", "start_time is after end_time");
        lua_getfield(L, 3, "max_id");
        why = lua_isnil(L, -1) ? NULL : ctc_to_id(L, -1, &max_id);
        if (why != NULL)
            return arg_fail(L, "max_id", "max_id %s", why);
        lua_pop(L, 1);
        break;
    default:
        break;
    }

    if (op == CTC_OP_DIAL) {
        push_dial_body(L, phone_a, phone_b, user_data, seat);
        push_request(L, 2, op);
        lua_pushnil(L); /* no cursor */
        if (lua_isboolean(L, 4) && !lua_toboolean(L, 4))
            return 2; /* the caller has no use for the parts */
        lua_pushstring(L, phone_a);
        lua_pushstring(L, phone_b);
        lua_pushlstring(L, seat.s, seat.len);
        return 5;
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
    return 1;
}

/* core.normalize_phone(s [, country_code]) -> "+86..." | nil, err (kind "argument") */
int ctc_l_normalize_phone(lua_State *L)
{
    size_t n, ccn = 2;
    const char *s, *cc = "86";
    ctc_phone_why w;
    char out[CTC_PHONE_MAX];
    if (lua_type(L, 1) != LUA_TSTRING)
        return arg_fail(L, NULL, "phone number must be a string, got %s", luaL_typename(L, 1));
    s = lua_tolstring(L, 1, &n);
    if (!lua_isnoneornil(L, 2)) {
        if (lua_type(L, 2) != LUA_TSTRING)
            return arg_fail(L, NULL, "country code must be a string of digits");
        cc = lua_tolstring(L, 2, &ccn);
    }
    if (ctc_phone_normalize(s, n, cc, ccn, out, sizeof out, &w) != 0)
        return arg_fail(L, NULL, "%s", push_phone_why(L, &w));
    lua_pushstring(L, out);
    return 1;
}

/* core.format_time(string | unix seconds) -> "yyyy-MM-dd HH:mm:ss" (UTC+8) | nil, err */
int ctc_l_format_time(lua_State *L)
{
    int64_t epoch;
    char out[32];
    ctc_time_why w;
    int rc = to_epoch(L, 1, "time", NULL, &epoch);
    if (rc != 0)
        return rc;
    if (ctc_time_format(epoch, out, sizeof out, &w) != 0)
        return arg_fail(L, NULL, "%s", push_time_why(L, &w)); /* not reached: to_epoch keeps to the range */
    lua_pushstring(L, out);
    return 1;
}

/* core.parse_time("yyyy-MM-dd HH:mm:ss") -> Unix seconds (the string read in UTC+8) | nil, err.
 * The Lua side (jobs, the command line) has no date arithmetic of its own: it asks here. */
int ctc_l_parse_time(lua_State *L)
{
    int64_t epoch;
    int rc;
    if (lua_type(L, 1) != LUA_TSTRING)
        return arg_fail(L, NULL, "time must be a \"yyyy-MM-dd HH:mm:ss\" string");
    rc = to_epoch(L, 1, "time", NULL, &epoch);
    if (rc != 0)
        return rc;
    lua_pushinteger(L, (lua_Integer)epoch);
    return 1;
}
