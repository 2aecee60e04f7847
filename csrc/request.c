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

/* Where a body goes: a Lua buffer (core.request; raises when memory runs out, as Lua does) or the
 * transport's C buffer (its own dial: failed set instead, checked once at the end). */
typedef struct body_out {
    luaL_Buffer *lb;
    ctc_buf *cb;
    int failed;
} body_out;

static void put(body_out *o, const char *s, size_t n)
{
    if (o->lb != NULL)
        luaL_addlstring(o->lb, s, n);
    else if (ctc_buf_append(o->cb, s, n) != 0)
        o->failed = 1;
}

#define PUTS(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_json_string(body_out *o, const char *s, size_t n)
{
    size_t i, start = 0;
    PUTS(o, "\"");
    for (i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            put(o, s + start, i - start);
            PUTS(o, "\\");
            start = i;
        }
    }
    put(o, s + start, n - start);
    PUTS(o, "\"");
}

/* "name":"value", with a comma before unless first; names need no escaping */
static void put_member(body_out *o, int first, const char *name, const char *s, size_t n)
{
    if (!first)
        PUTS(o, ",");
    PUTS(o, "\"");
    put(o, name, strlen(name));
    PUTS(o, "\":");
    put_json_string(o, s, n);
}

static void put_time_member(body_out *o, const char *name, int64_t epoch)
{
    char when[32];
    /* to_epoch() only accepts epochs ctc_time_format can write */
    if (ctc_time_format(epoch, when, sizeof when, NULL) != 0)
        when[0] = '\0';
    put_member(o, 0, name, when, strlen(when));
}

static void put_int_member(body_out *o, const char *name, int64_t v)
{
    char digits[CTC_I64_LEN];
    const char *d = ctc_i64_str(digits, v);
    PUTS(o, "\"");
    put(o, name, strlen(name));
    PUTS(o, "\":");
    put(o, d, strlen(d));
}

static int needs_escape(text t)
{
    return memchr(t.s, '"', t.len) != NULL || memchr(t.s, '\\', t.len) != NULL;
}

/* a dial's body, in the order of the provider's example. The usual one (nothing to escape, short) is
 * put together on the stack and handed over in one piece: a dial's cost is mostly calls like put's. */
static void put_dial_body(body_out *o, const char *caller, const char *callee, text user_data, text seat)
{
    char out[256];
    size_t an = strlen(caller), bn = strlen(callee), k = 0;
    if (an + bn + user_data.len + seat.len + 64 > sizeof out || needs_escape(user_data) || needs_escape(seat)) {
        PUTS(o, "{");
        put_member(o, 1, "callerNbr", caller, an);
        put_member(o, 0, "calleeNbr", callee, bn);
        put_member(o, 0, "userData", user_data.s, user_data.len);
        put_member(o, 0, "setingNbr", seat.s, seat.len);
        PUTS(o, "}");
        return;
    }
#define ADD(s, n) (memcpy(out + k, (s), (n)), k += (n))
#define ADDS(lit) ADD(lit, sizeof lit - 1)
    ADDS("{\"callerNbr\":\"");
    ADD(caller, an);
    ADDS("\",\"calleeNbr\":\"");
    ADD(callee, bn);
    ADDS("\",\"userData\":\"");
    ADD(user_data.s, user_data.len);
    ADDS("\",\"setingNbr\":\"");
    ADD(seat.s, seat.len);
    ADDS("\"}");
#undef ADDS
#undef ADD
    put(o, out, k);
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
    /* room for the five set here and the four exchange.lua adds (timeouts, max_body, want_headers) */
    lua_createtable(L, 0, 9);
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

/* The country code and the user_data (the call's own wins over the client's) of config at cfg and the
 * call's arguments at args: 0, or 2 with the failure pushed. */
static int get_common(lua_State *L, int cfg, int args, text *cc, text *user_data)
{
    int rc;
    lua_getfield(L, cfg, "country_code");
    if (lua_type(L, -1) == LUA_TSTRING)
        cc->s = lua_tolstring(L, -1, &cc->len);
    lua_pop(L, 1); /* the config holds the string */
    lua_getfield(L, args, "user_data");
    rc = get_text(L, lua_isnil(L, -1) ? cfg : args, "user_data",
                  "is missing (give it to clicktocall.new{} or to the call)", user_data);
    if (rc == 0)
        lua_pop(L, 1);
    return rc;
}

static int get_dial(lua_State *L, int args, text cc, char caller[CTC_PHONE_MAX], char callee[CTC_PHONE_MAX],
                    text *seat)
{
    int rc;
    if ((rc = get_phone(L, args, "caller", cc, caller)) != 0 || (rc = get_phone(L, args, "callee", cc, callee)) != 0)
        return rc;
    return get_text(L, args, "seat", "is missing", seat);
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
    body_out o = { &b, NULL, 0 };

    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    if ((rc = get_common(L, 2, 3, &cc, &user_data)) != 0)
        return rc;

    switch (op) {
    case CTC_OP_BIND_SEAT:
        if ((rc = get_text(L, 3, "seat", "is missing", &seat)) != 0
            || (rc = get_phone(L, 3, "phone", cc, phone_a)) != 0)
            return rc;
        break;
    case CTC_OP_DIAL:
        if ((rc = get_dial(L, 3, cc, phone_a, phone_b, &seat)) != 0)
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

    /* nothing below touches the stack except through the buffer */
    luaL_buffinit(L, &b);
    switch (op) {
    case CTC_OP_BIND_SEAT:
        PUTS(&o, "{");
        put_member(&o, 1, "userData", user_data.s, user_data.len);
        put_member(&o, 0, "setingNbr", seat.s, seat.len);
        put_member(&o, 0, "userPhone", phone_a, strlen(phone_a));
        break;
    case CTC_OP_DIAL:
        put_dial_body(&o, phone_a, phone_b, user_data, seat);
        break;
    case CTC_OP_BALANCE:
        PUTS(&o, "{");
        put_member(&o, 1, "userData", user_data.s, user_data.len);
        break;
    default:
        PUTS(&o, "{");
        put_int_member(&o, "maxId", max_id);
        put_time_member(&o, "starTime", t0);
        put_time_member(&o, "endTime", t1);
        put_member(&o, 0, "userData", user_data.s, user_data.len);
        break;
    }
    if (op != CTC_OP_DIAL)
        PUTS(&o, "}");
    luaL_pushresult(&b);
    push_request(L, 2, op);
    if (op == CTC_OP_RECORDS_PAGE) {
        /* the reader needs the cursor asked for, exactly */
        ctc_push_id(L, max_id);
        return 2;
    }
    if (op != CTC_OP_DIAL)
        return 1;
    lua_pushnil(L); /* no cursor */
    if (lua_isboolean(L, 4) && !lua_toboolean(L, 4))
        return 2; /* the caller has no use for the parts */
    lua_pushstring(L, phone_a);
    lua_pushstring(L, phone_b);
    lua_pushlstring(L, seat.s, seat.len);
    return 5;
}

/* The fields a dial may have in the transport's own dial: any other (force, a misspelt one) goes the
 * long way, where its sentence is written. */
static int plain_dial_args(lua_State *L, int args)
{
    int ok = 1;
    if (lua_getmetatable(L, args)) { /* __pairs or __index: the long way reads the fields as Lua does */
        lua_pop(L, 1);
        return 0;
    }
    lua_pushnil(L);
    while (ok && lua_next(L, args) != 0) {
        size_t n = 0;
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &n) : "";
        /* caller, callee, seat, user_data: told apart by length and the bytes that differ */
        ok = (n == 6 && (memcmp(k, "caller", 6) == 0 || memcmp(k, "callee", 6) == 0))
             || (n == 4 && memcmp(k, "seat", 4) == 0) || (n == 9 && memcmp(k, "user_data", 9) == 0);
        lua_pop(L, ok ? 1 : 2);
    }
    return ok;
}

int ctc_dial_body(lua_State *L, int cfg, int args, ctc_buf *out)
{
    text user_data, seat, cc = { "86", 2 };
    char caller[CTC_PHONE_MAX], callee[CTC_PHONE_MAX];
    body_out o = { NULL, out, 0 };
    if (!plain_dial_args(L, args))
        return 1;
    if (get_common(L, cfg, args, &cc, &user_data) != 0 || get_dial(L, args, cc, caller, callee, &seat) != 0) {
        lua_pop(L, 2); /* core.request will say it */
        return 1;
    }
    ctc_buf_reset(out);
    put_dial_body(&o, caller, callee, user_data, seat);
    return o.failed ? -1 : 0;
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
