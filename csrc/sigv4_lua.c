/*
 * The Lua face of the signer (sigv4.c): core.sigv4_sign signs one request to an S3-compatible
 * store, core.s3_url builds an object's URL. Every bad argument is nil and { kind = "argument",
 * field, message }; no message ever holds the secret key (the sentences are static).
 */
#include <string.h>
#include <time.h>
#include "ctc.h"
#include "sigv4.h"

#define MAX_HEADERS 64

static int arg_fail(lua_State *L, const char *field, const char *sentence)
{
    ctc_push_fail(L, "argument", 0, "%s: %s", field, sentence);
    lua_pushstring(L, field);
    lua_setfield(L, -2, "field");
    return 2;
}

/* t[name] as a string (NULL when absent); a non-string is *bad = 1 */
static const char *opt_string(lua_State *L, int t, const char *name, size_t *len, int *bad)
{
    const char *s = NULL;
    lua_getfield(L, t, name);
    if (lua_type(L, -1) == LUA_TSTRING)
        s = lua_tolstring(L, -1, len);
    else if (!lua_isnil(L, -1))
        *bad = 1;
    lua_pop(L, 1); /* the string stays alive in the table t */
    return s;
}

typedef struct url_parts {
    const char *scheme, *host, *path, *query;
    size_t scheme_len, host_len, path_len, query_len;
} url_parts;

/* "http(s)://host[:port][/path][?query]", no userinfo, no fragment */
static const char *split_url(const char *u, size_t n, url_parts *p)
{
    size_t i = 0, h;
    if (n >= 8 && memcmp(u, "https://", 8) == 0)
        i = 8;
    else if (n >= 7 && memcmp(u, "http://", 7) == 0)
        i = 7;
    else
        return "must start with http:// or https://";
    p->scheme = u;
    p->scheme_len = i - 3;
    for (h = i; h < n && u[h] != '/' && u[h] != '?'; h++)
        if (u[h] == '@' || u[h] == '#' || (unsigned char)u[h] <= 0x20 || u[h] == 0x7f)
            return "has no user, fragment, space or control character in its host";
    if (h == i)
        return "has no host";
    p->host = u + i;
    p->host_len = h - i;
    p->path = u + h;
    for (i = h; i < n && u[i] != '?'; i++)
        if (u[i] == '#')
            return "has a fragment (#)";
    p->path_len = i - h;
    p->query = i < n ? u + i + 1 : "";
    p->query_len = i < n ? n - i - 1 : 0;
    if (memchr(p->query, '#', p->query_len) != NULL)
        return "has a fragment (#)";
    return NULL;
}

static int reserved_header(const char *s, size_t n)
{
    static const char *const names[] = { "host", "authorization", "x-amz-date", "x-amz-content-sha256",
                                         "x-amz-security-token", NULL };
    int i;
    for (i = 0; names[i] != NULL; i++) {
        size_t k;
        if (strlen(names[i]) != n)
            continue;
        for (k = 0; k < n && (s[k] | 0x20) == (names[i][k] | 0x20); k++)
            ;
        if (k == n)
            return 1;
    }
    return 0;
}

static int hex_hash(const char *s, size_t n)
{
    size_t i;
    if (n == 16 && memcmp(s, "UNSIGNED-PAYLOAD", 16) == 0)
        return 1;
    if (n != 64)
        return 0;
    for (i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* the time: t.time as whole Unix seconds in range, else now */
static const char *get_time(lua_State *L, int t, int64_t *out)
{
    lua_Number v;
    lua_getfield(L, t, "time");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        *out = (int64_t)time(NULL);
        return NULL;
    }
    if (lua_type(L, -1) != LUA_TNUMBER) {
        lua_pop(L, 1);
        return "must be Unix seconds (a number)";
    }
    v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(v >= 0 && v <= (lua_Number)CTC_SIGV4_MAX_TIME) || v != (lua_Number)(int64_t)v)
        return "must be whole Unix seconds from 1970 to 9999";
    *out = (int64_t)v;
    return NULL;
}

typedef struct sign_in {
    ctc_sigv4_header h[MAX_HEADERS + 4];
    size_t nh;
    ctc_sigv4_request r;
    ctc_sigv4_key k;
    url_parts u;
    const char *token;
    size_t token_len;
} sign_in;

/* the caller's headers into in->h; NULL or the sentence for field "headers" */
static const char *get_headers(lua_State *L, int t, sign_in *in)
{
    lua_getfield(L, t, "headers");
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return NULL;
    }
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return "must be a table of names to string values";
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        ctc_sigv4_header *h = &in->h[in->nh];
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
            lua_pop(L, 3);
            return "must be a table of names to string values";
        }
        if (in->nh >= MAX_HEADERS) {
            lua_pop(L, 3);
            return "has more than 64 headers";
        }
        h->name = lua_tolstring(L, -2, &h->name_len);
        h->value = lua_tolstring(L, -1, &h->value_len);
        if (reserved_header(h->name, h->name_len)) {
            lua_pop(L, 3);
            return "may not hold host, authorization or the x-amz-date, x-amz-content-sha256 and "
                   "x-amz-security-token the signer sets";
        }
        in->nh++;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return NULL;
}

static void add_header(sign_in *in, const char *name, const char *v, size_t vlen)
{
    ctc_sigv4_header *h = &in->h[in->nh++];
    h->name = name;
    h->name_len = strlen(name);
    h->value = v;
    h->value_len = vlen;
}

/* reads and checks t; 0, or pushed nil, err and returns 2 */
static int read_args(lua_State *L, sign_in *in)
{
    const char *s, *why;
    size_t n;
    int bad = 0;
    int64_t t;

#define STR(var, name, required)                                                       \
    do {                                                                               \
        var = opt_string(L, 1, name, &var##_len, &bad);                                \
        if (bad)                                                                       \
            return arg_fail(L, name, "must be a string");                              \
        if ((required) && (var == NULL || var##_len == 0))                             \
            return arg_fail(L, name, "is missing");                                    \
    } while (0)
    STR(in->r.method, "method", 0);
    if (in->r.method == NULL) {
        in->r.method = "GET";
        in->r.method_len = 3;
    }
    STR(in->r.payload_hash, "payload_hash", 1);
    if (!hex_hash(in->r.payload_hash, in->r.payload_hash_len))
        return arg_fail(L, "payload_hash", "must be the body's SHA-256 in lower-case hex, or UNSIGNED-PAYLOAD");
    STR(in->k.region, "region", 1);
    STR(in->k.service, "service", 0);
    if (in->k.service == NULL) {
        in->k.service = "s3";
        in->k.service_len = 2;
    }
    STR(in->k.access_key, "access_key", 1);
    STR(in->k.secret_key, "secret_key", 1);
    STR(in->token, "session_token", 0);
#undef STR
    if ((why = get_time(L, 1, &t)) != NULL)
        return arg_fail(L, "time", why);
    if (ctc_sigv4_amz_date(t, in->k.amz_date, &why) != 0)
        return arg_fail(L, "time", why);

    s = opt_string(L, 1, "url", &n, &bad);
    if (bad)
        return arg_fail(L, "url", "must be a string");
    if (s != NULL) {
        if ((why = split_url(s, n, &in->u)) != NULL)
            return arg_fail(L, "url", why);
    } else {
        in->u.scheme = "https";
        in->u.scheme_len = 5;
        in->u.host = opt_string(L, 1, "host", &in->u.host_len, &bad);
        if (bad || in->u.host == NULL || in->u.host_len == 0)
            return arg_fail(L, "host", "is missing (give url, or host and path)");
        in->u.path = opt_string(L, 1, "path", &in->u.path_len, &bad);
        if (bad)
            return arg_fail(L, "path", "must be a string");
        in->u.query = opt_string(L, 1, "query", &in->u.query_len, &bad);
        if (bad)
            return arg_fail(L, "query", "must be a string");
        if (in->u.path == NULL)
            in->u.path = "";
        if (in->u.query == NULL)
            in->u.query = "";
    }
    if ((why = get_headers(L, 1, in)) != NULL)
        return arg_fail(L, "headers", why);
    return 0;
}

/* the headers to send: the caller's, host, x-amz-*, authorization */
static void push_result(lua_State *L, const sign_in *in, const ctc_buf *auth)
{
    size_t i;
    lua_createtable(L, 0, (int)in->nh + 1);
    for (i = 0; i < in->nh; i++) {
        lua_pushlstring(L, in->h[i].name, in->h[i].name_len);
        lua_pushlstring(L, in->h[i].value, in->h[i].value_len);
        lua_rawset(L, -3);
    }
    lua_pushlstring(L, auth->data, auth->len);
    lua_setfield(L, -2, "authorization");
}

/* core.sigv4_sign{ method, url | host, path, query, headers, payload_hash, region, service,
 * access_key, secret_key, session_token, time } -> headers to send, the URL to send them to |
 * nil, err. The path of url is decoded, then every segment encoded once, as is path (an
 * object key's bytes, not encoded); the URL returned is the one signed. */
static int l_sigv4_sign(lua_State *L)
{
    sign_in in;
    ctc_buf path = { 0 }, auth = { 0 }, url = { 0 };
    const char *why = NULL;
    int rc;

    if (!lua_istable(L, 1))
        return arg_fail(L, "options", "must be a table");
    memset(&in, 0, sizeof in);
    if ((rc = read_args(L, &in)) != 0)
        return rc;
    add_header(&in, "host", in.u.host, in.u.host_len);
    add_header(&in, "x-amz-date", in.k.amz_date, 16);
    add_header(&in, "x-amz-content-sha256", in.r.payload_hash, in.r.payload_hash_len);
    if (in.token != NULL && in.token_len > 0)
        add_header(&in, "x-amz-security-token", in.token, in.token_len);
    /* the url's path as sent: decoded once, so the signer encodes it once */
    if (ctc_sigv4_uri_decode(&path, in.u.path, in.u.path_len) != 0) {
        why = "out of memory";
        goto fail;
    }
    in.r.path = path.data != NULL ? path.data : "";
    in.r.path_len = path.len;
    in.r.query = in.u.query;
    in.r.query_len = in.u.query_len;
    in.r.headers = in.h;
    in.r.nheaders = in.nh;
    if (ctc_sigv4_authorization(&in.r, &in.k, &auth, NULL, &why) != 0)
        goto fail;
    if (ctc_buf_append(&url, in.u.scheme, in.u.scheme_len) != 0 || ctc_buf_append(&url, "://", 3) != 0 ||
        ctc_buf_append(&url, in.u.host, in.u.host_len) != 0 ||
        ctc_sigv4_canonical_uri(&url, in.r.path, in.r.path_len, &why) != 0) {
        why = "out of memory";
        goto fail;
    }
    if (in.r.query_len > 0) {
        size_t before = url.len;
        if (ctc_buf_append(&url, "?", 1) != 0 ||
            ctc_sigv4_canonical_query(&url, in.r.query, in.r.query_len, &why) != 0)
            goto fail;
        if (url.len == before + 1)
            url.len = before;
    }
    push_result(L, &in, &auth);
    lua_pushlstring(L, url.data, url.len);
    ctc_buf_free(&path);
    ctc_buf_free(&auth);
    ctc_buf_free(&url);
    return 2;
fail:
    ctc_buf_free(&path);
    ctc_buf_free(&auth);
    ctc_buf_free(&url);
    /* which argument: the signer's sentences name their subject */
    return arg_fail(L, strncmp(why, "region", 6) == 0    ? "region"
                       : strncmp(why, "service", 7) == 0 ? "service"
                       : strncmp(why, "access_key", 10) == 0 ? "access_key"
                       : strncmp(why, "the method", 10) == 0 ? "method"
                       : strstr(why, "header") != NULL    ? "headers"
                                                          : "options",
                    why);
}

/* core.s3_url{ endpoint = "https://host[:port]", bucket, key, path_style } -> url | nil, err:
 * path-style endpoint/bucket/key or virtual-hosted bucket.endpoint/key, every segment of the key
 * encoded once ("a b/ü?.wav" -> "a%20b/%C3%BC%3F.wav"). */
static int l_s3_url(lua_State *L)
{
    const char *ep, *bucket, *key, *why;
    size_t ep_len = 0, bucket_len = 0, key_len = 0, i;
    int bad = 0, path_style;
    url_parts u;
    ctc_buf url = { 0 };

    if (!lua_istable(L, 1))
        return arg_fail(L, "options", "must be a table");
    ep = opt_string(L, 1, "endpoint", &ep_len, &bad);
    if (bad || ep == NULL)
        return arg_fail(L, "endpoint", "is missing (a URL: https://host[:port])");
    if ((why = split_url(ep, ep_len, &u)) != NULL)
        return arg_fail(L, "endpoint", why);
    if (u.query_len > 0 || ep[ep_len - 1] == '?' || (u.path_len > 0 && !(u.path_len == 1 && u.path[0] == '/')))
        return arg_fail(L, "endpoint", "must be scheme and host only (no path or query)");
    bucket = opt_string(L, 1, "bucket", &bucket_len, &bad);
    if (bad || bucket == NULL || bucket_len == 0)
        return arg_fail(L, "bucket", "is missing");
    for (i = 0; i < bucket_len; i++) {
        char c = bucket[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_'))
            return arg_fail(L, "bucket", "may hold only letters, digits, '-', '.' and '_'");
    }
    key = opt_string(L, 1, "key", &key_len, &bad);
    if (bad)
        return arg_fail(L, "key", "must be a string");
    lua_getfield(L, 1, "path_style");
    path_style = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (ctc_buf_append(&url, u.scheme, u.scheme_len + 3) != 0 ||
        (!path_style && (ctc_buf_append(&url, bucket, bucket_len) != 0 || ctc_buf_append(&url, ".", 1) != 0)) ||
        ctc_buf_append(&url, u.host, u.host_len) != 0 ||
        (path_style && (ctc_buf_append(&url, "/", 1) != 0 || ctc_buf_append(&url, bucket, bucket_len) != 0)) ||
        ctc_buf_append(&url, "/", 1) != 0 ||
        (key != NULL && ctc_sigv4_uri_encode(&url, key_len > 0 && key[0] == '/' ? key + 1 : key,
                                             key_len > 0 && key[0] == '/' ? key_len - 1 : key_len, 1) != 0)) {
        ctc_buf_free(&url);
        return ctc_push_fail(L, "argument", 0, "s3_url: out of memory");
    }
    lua_pushlstring(L, url.data, url.len);
    ctc_buf_free(&url);
    return 1;
}

void ctc_open_sigv4(lua_State *L)
{
    lua_pushcfunction(L, l_sigv4_sign);
    lua_setfield(L, -2, "sigv4_sign");
    lua_pushcfunction(L, l_s3_url);
    lua_setfield(L, -2, "s3_url");
}
