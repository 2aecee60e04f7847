/*
 * The libcurl transport: one easy handle per client, reused so connections
 * stay alive. perform(request) -> response | nil, err; download(request, path)
 * streams a body to a new file. The handle and the request's buffers are a
 * ctc_easy (easy.c), as in the batch transport (multi.c); this file is the
 * Lua object around one of them.
 *
 * While curl_easy_perform runs, the callbacks touch only the ctc_easy's C
 * memory; results and errors are pushed after it returns.
 */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include "easy.h"

#define CURL_MT "clicktocall.curl"

typedef struct transport {
    ctc_easy x;
    int closed;
    ctc_curl_opts opts;    /* copies of the options: the handle is made on first use */
} transport;

/* Makes the easy handle on first use: a client that is made and dropped
 * unused costs the collector nothing it cannot see. */
static CURLcode ensure_handle(lua_State *L, transport *t)
{
    CURLcode rc;
    if (t->x.easy != NULL)
        return CURLE_OK;
    rc = ctc_easy_open(L, &t->x, &t->opts);
    /* one kept-alive connection, so the one CURLINFO_ACTIVESOCKET names is all
     * there is to check before the next transfer (see drop_poisoned) */
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(t->x.easy, CURLOPT_MAXCONNECTS, 1L);
    return rc;
}

/* A kept-alive connection that is readable while no request is out holds an
 * answer nobody asked for (or the server's close): the next request must not
 * read it as its own. Dropping the handle closes that connection; the next
 * one is made fresh. */
static void drop_poisoned(ctc_easy *x)
{
    struct pollfd p;
    if (x->easy == NULL || x->last_sock == CURL_SOCKET_BAD)
        return;
    p.fd = x->last_sock;
    p.events = POLLIN;
    p.revents = 0;
    x->last_sock = CURL_SOCKET_BAD;
    if (poll(&p, 1, 0) != 0) { /* readable, hung up, or poll failed: do not trust it */
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
}

/* After a transfer: the connection libcurl keeps for the next one, if any. */
static void note_connection(ctc_easy *x)
{
    curl_socket_t sock = CURL_SOCKET_BAD;
    if (curl_easy_getinfo(x->easy, CURLINFO_ACTIVESOCKET, &sock) != CURLE_OK)
        sock = CURL_SOCKET_BAD;
    x->last_sock = sock;
}

static transport *check_open(lua_State *L)
{
    transport *t = luaL_checkudata(L, 1, CURL_MT);
    if (t->closed)
        luaL_error(L, "attempt to use a closed clicktocall transport");
    return t;
}

/* What every transfer starts with: the request table, a handle whose kept connection can be trusted, the
 * request copied in (misuse raises). CURLE_OK, or the code of a handle that could not be made. */
static CURLcode start(lua_State *L, transport *t, int mode)
{
    CURLcode rc;
    luaL_checktype(L, 2, LUA_TTABLE);
    drop_poisoned(&t->x);
    if ((rc = ensure_handle(L, t)) == CURLE_OK)
        ctc_easy_prepare(L, &t->x, 2, mode);
    return rc;
}

/* t:perform(request) -> { status, headers, body } | nil, err */
static int l_perform(lua_State *L)
{
    transport *t = check_open(L);
    CURLcode rc;
    if ((rc = start(L, t, CTC_EASY_SEND)) != CURLE_OK)
        return ctc_easy_push_start_error(L, rc);
    rc = curl_easy_perform(t->x.easy);
    note_connection(&t->x);
    return ctc_easy_push_result(L, &t->x, rc);
}

/* An accepted dial's answer in the provider's usual form, read here (ctc_fast_dial): its session id
 * pushed (1), no response table, no copy of the body; anything else is left for the long way (0). */
static int read_session(lua_State *L, transport *t, CURLcode rc)
{
    long status = 0;
    if (rc == CURLE_OK && curl_easy_getinfo(t->x.easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK
        && status >= 200 && status <= 299 && ctc_fast_dial(L, t->x.body.data, t->x.body.len)) {
        ctc_buf_reset(&t->x.body);
        return 1;
    }
    return 0;
}

/*
 * t:dial(config, args, timeout, connect_timeout, max_body) -> session id | false | true, what perform returns
 * A whole dial in C: its arguments checked and its body written as core.request would (ctc_dial_body),
 * sent with the config's URL and headers (kept there by core.request's first dial), an accepted answer read.
 * false: nothing was sent, the arguments need core.request (a field it refuses or only it reads), or this
 * config has not been through it yet. true, ...: the dial went, and its answer is for the long way to read.
 */
static int l_dial(lua_State *L)
{
    transport *t = check_open(L);
    CURLcode rc;
    int n;
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_settop(L, 6);
    lua_getfield(L, 2, "url_dial");       /* 7 */
    lua_getfield(L, 2, "shared_headers"); /* 8 */
    if (lua_type(L, 7) != LUA_TSTRING || !lua_istable(L, 8)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    drop_poisoned(&t->x);
    if ((rc = ensure_handle(L, t)) != CURLE_OK) {
        lua_pushboolean(L, 1);
        return 1 + ctc_easy_push_start_error(L, rc);
    }
    n = ctc_dial_body(L, 2, 3, &t->x.req_body);
    if (n != 0) {
        if (n < 0)
            luaL_error(L, "out of memory");
        lua_pushboolean(L, 0);
        return 1;
    }
    ctc_easy_prepare_dial(L, &t->x, 7, 8, 4);
    rc = curl_easy_perform(t->x.easy);
    note_connection(&t->x);
    if (read_session(L, t, rc))
        return 1;
    lua_pushboolean(L, 1);
    return 1 + ctc_easy_push_result(L, &t->x, rc);
}

/*
 * t:download(request, tmp_path) -> { status, headers, body, bytes, sha256 } | nil, err
 * Creates tmp_path (it must not exist), streams a 2xx body into it and fsyncs it.
 * The caller renames it into place; on any failure here the file is removed.
 */
static int l_download(lua_State *L)
{
    transport *t = check_open(L);
    const char *tmp = luaL_checkstring(L, 3);
    CURLcode rc;
    if ((rc = start(L, t, CTC_EASY_DOWNLOAD)) != CURLE_OK)
        return ctc_easy_push_start_error(L, rc);
    if (ctc_easy_create_file(L, &t->x, tmp) != 0)
        return 2;
    rc = curl_easy_perform(t->x.easy);
    note_connection(&t->x);
    return ctc_easy_finish_download(L, &t->x, rc);
}

/*
 * t:upload(request) -> { status, headers, body } | nil, err
 * A PUT of request.body_size bytes of request.body_file, streamed (upload.c).
 */
static int l_upload(lua_State *L)
{
    transport *t = check_open(L);
    CURLcode rc;
    if ((rc = start(L, t, CTC_EASY_UPLOAD)) != CURLE_OK)
        return ctc_easy_push_start_error(L, rc);
    if (ctc_upload_open(L, &t->x, 2) != 0)
        return 2;
    rc = curl_easy_perform(t->x.easy);
    note_connection(&t->x);
    return ctc_upload_finish(L, &t->x, rc);
}

/* One idempotent closer for close(), __gc and __close. */
static int l_close(lua_State *L)
{
    transport *t = luaL_checkudata(L, 1, CURL_MT);
    if (!t->closed) {
        ctc_easy_unanchor(L, &t->x);
        ctc_easy_release(&t->x);
        t->closed = 1;
    }
    ctc_curl_opts_free(&t->opts);
    return 0;
}

static int l_tostring(lua_State *L)
{
    transport *t = luaL_checkudata(L, 1, CURL_MT);
    lua_pushfstring(L, "clicktocall.curl (%s)", t->closed ? "closed" : "open");
    return 1;
}

/* core.curl_transport{ ca_file=, insecure=, proxy= } -> transport | nil, message */
static int l_new(lua_State *L)
{
    transport *t;
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* consistent before anything can fail; the easy handle comes on first use */
    t = ctc_newuserdata(L, sizeof *t);
    memset(t, 0, sizeof *t);
    ctc_easy_clear(&t->x);
    t->x.hdr_anchor = 1; /* one handle, one client's requests: see easy.h */
    luaL_getmetatable(L, CURL_MT);
    lua_setmetatable(L, -2);
    if (ctc_curl_opts_read(L, 1, &t->opts) != 0) {
        return ctc_push_fail(L, "network", 0, "could not start libcurl: out of memory");
    }
    return 1;
}

static const luaL_Reg curl_methods[] = {
    { "perform", l_perform },
    { "dial", l_dial },
    { "download", l_download },
    { "upload", l_upload },
    { "close", l_close },
    { NULL, NULL },
};

static const luaL_Reg curl_meta[] = {
    { "__gc", l_close },
    { "__close", l_close },
    { "__tostring", l_tostring },
    { NULL, NULL },
};

void ctc_open_curl(lua_State *L)
{
    static int global_done = 0; /* curl_global_init is not thread-safe: once */
    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            luaL_error(L, "curl_global_init failed");
        global_done = 1;
    }
    if (luaL_newmetatable(L, CURL_MT)) {
        ctc_setfuncs(L, curl_meta);
        lua_newtable(L);
        ctc_setfuncs(L, curl_methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "clicktocall.curl");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "curl_transport");
    {
        curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        lua_pushstring(L, v->version);
        lua_setfield(L, -2, "curl_version");
    }
}
