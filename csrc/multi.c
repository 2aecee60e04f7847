/*
 * The batch transport over libcurl's multi interface: many requests in flight
 * at once, each one the same ctc_easy (easy.c) the single transport
 * performs, so each keeps its timeouts, max_body, http/https only, TLS rules
 * and the never-re-send rule for dials.
 *
 *   m = core.curl_multi{ ca_file =, insecure =, proxy =, max_connections = }
 *   m:add(token, request [, tmp_path]) -> true | nil, err   starts a transfer (a download with
 *                                        tmp_path; an upload when request.body_file is set, upload.c)
 *   m:wait(max_seconds) -> { { token, res } | { token, nil, err }, ... }
 *   m:count(), m:close() (also __gc, __close)
 *
 * Easy handles are pooled and reused; connections live in the multi's cache
 * (keep-alive per connection). libcurl runs only inside wait(); its callbacks
 * touch only C memory; results are pushed after curl_multi_perform returns.
 * Tokens live in the userdata's user value, never in C memory.
 *
 * The third fact (DESIGN.md): libcurl 7.88 reuses a kept-alive connection
 * that holds unread bytes (a stray, unasked answer), and the next request
 * would read them as its own. curl.c polls its one connection before each
 * perform; with a shared cache we cannot know which connection libcurl will
 * pick, so the check moves to the last moment: the pre-request callback,
 * called once the connection is chosen and before a byte of the request is
 * written. There CURLINFO_ACTIVESOCKET is still -1, but the callback is told
 * the connection's addresses and ports, and every socket libcurl has comes
 * from our open-socket callback, so the socket is found by its addresses and
 * polled. Readable (stray bytes, or the server's close) means the request must
 * not go on it: the callback aborts the transfer (nothing was sent; libcurl
 * closes a connection whose transfer failed), and the transfer is started
 * again on a fresh connection (CURLOPT_FRESH_CONNECT). A fresh connection that
 * is readable before the request is refused (the server spoke first).
 * This covers every request, not only dials: a records page read off a
 * poisoned connection would be as wrong. What no client check can cover is
 * a stray answer that arrives after the check, while the request is out, or
 * (over TLS) one the TLS library has already read off the socket into its own
 * buffer; the single transport has the same limits. Before libcurl 7.80 there is no
 * pre-request callback: connections are then never reused (FORBID_REUSE).
 * FRESH_CONNECT for dials alone would have left every other request exposed.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "easy.h"

#define MULTI_MT "clicktocall.curl_multi"

struct multi;

typedef struct slot {
    ctc_easy x;        /* first: the callbacks' data is &slot->x */
    struct multi *m;
    int index;             /* 1-based: the token's key in the user value */
    int busy;              /* in the multi */
    int mode;              /* CTC_EASY_SEND, _DOWNLOAD or _UPLOAD */
    int restarts;          /* starts again after a readable connection */
    int poisoned;          /* the pre-request check found one */
} slot;

typedef struct multi {
    CURLM *multi;
    slot **slots;
    int nslots, slots_cap;
    int in_flight;
    curl_socket_t *socks;  /* every socket libcurl opened for us, still open */
    size_t nsocks, socks_cap;
    int closed;
    ctc_curl_opts opts;
} multi;

/* ---- the user value (a table of tokens), on every Lua version ---- */

static void *new_userdata(lua_State *L, size_t size)
{
#if LUA_VERSION_NUM >= 504
    return lua_newuserdatauv(L, size, 1);
#else
    return lua_newuserdata(L, size);
#endif
}

/* sets the table on top as the user value of the userdata at idx (pops it) */
static void set_tokens(lua_State *L, int idx)
{
#if LUA_VERSION_NUM >= 504
    lua_setiuservalue(L, idx, 1);
#elif LUA_VERSION_NUM >= 502
    lua_setuservalue(L, idx);
#else
    lua_setfenv(L, idx);
#endif
}

static void get_tokens(lua_State *L, int idx)
{
#if LUA_VERSION_NUM >= 504
    lua_getiuservalue(L, idx, 1);
#elif LUA_VERSION_NUM >= 502
    lua_getuservalue(L, idx);
#else
    lua_getfenv(L, idx);
#endif
}

/* ================= callbacks: C memory only ================= */

static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    multi *m = ud;
    curl_socket_t s;
    (void)purpose;
    if (m->nsocks == m->socks_cap) {
        size_t cap = m->socks_cap ? m->socks_cap * 2 : 16;
        curl_socket_t *p = realloc(m->socks, cap * sizeof *p);
        if (p == NULL)
            return CURL_SOCKET_BAD; /* the connect fails: a network error, not a crash */
        m->socks = p;
        m->socks_cap = cap;
    }
    s = socket(a->family, a->socktype, a->protocol);
    if (s == CURL_SOCKET_BAD)
        return s;
    (void)fcntl(s, F_SETFD, FD_CLOEXEC);
    m->socks[m->nsocks++] = s;
    return s;
}

static int on_close_socket(void *ud, curl_socket_t s)
{
    multi *m = ud;
    size_t i;
    for (i = 0; i < m->nsocks; i++) {
        if (m->socks[i] == s) {
            m->socks[i] = m->socks[--m->nsocks];
            break;
        }
    }
    return close(s);
}

/* ip and port of a socket address as libcurl prints them; 0 or -1 */
static int addr_of(const struct sockaddr_storage *sa, char ip[INET6_ADDRSTRLEN], int *port)
{
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        *port = ntohs(in->sin_port);
        return inet_ntop(AF_INET, &in->sin_addr, ip, INET6_ADDRSTRLEN) ? 0 : -1;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        *port = ntohs(in6->sin6_port);
        return inet_ntop(AF_INET6, &in6->sin6_addr, ip, INET6_ADDRSTRLEN) ? 0 : -1;
    }
    return -1;
}

/* Whether socket s is the connection local_ip:local_port -> peer_ip:peer_port. */
static int is_connection(curl_socket_t s, const char *local_ip, int local_port, const char *peer_ip,
                         int peer_port)
{
    struct sockaddr_storage sa;
    socklen_t n = sizeof sa;
    char ip[INET6_ADDRSTRLEN];
    int port;
    if (getsockname(s, (struct sockaddr *)&sa, &n) != 0 || addr_of(&sa, ip, &port) != 0 ||
        port != local_port || strcmp(ip, local_ip) != 0)
        return 0;
    n = sizeof sa;
    if (getpeername(s, (struct sockaddr *)&sa, &n) != 0 || addr_of(&sa, ip, &port) != 0)
        return 0;
    return port == peer_port && strcmp(ip, peer_ip) == 0;
}

/* The pre-request check (see the file header): non-zero stops the request
 * before it is written when its connection is readable. */
static int check_connection(ctc_easy *x, const char *local_ip, int local_port, const char *peer_ip,
                            int peer_port)
{
    slot *s = x->owner;
    multi *m = s->m;
    size_t i;
    if (local_ip == NULL || peer_ip == NULL)
        return 0;
    for (i = 0; i < m->nsocks; i++) {
        if (is_connection(m->socks[i], local_ip, local_port, peer_ip, peer_port)) {
            struct pollfd p;
            p.fd = m->socks[i];
            p.events = POLLIN;
            p.revents = 0;
            if (poll(&p, 1, 0) != 0) { /* readable, hung up, or poll failed: do not trust it */
                s->poisoned = 1;
                return 1;
            }
            return 0;
        }
    }
    return 0;
}

/* ================= the pool ================= */

/* A slot not in the multi (a new one when all are busy); raises only when out of memory. */
static slot *free_slot(lua_State *L, multi *m)
{
    slot *s;
    int i;
    for (i = 0; i < m->nslots; i++)
        if (!m->slots[i]->busy)
            return m->slots[i];
    if (m->nslots == m->slots_cap) {
        int cap = m->slots_cap ? m->slots_cap * 2 : 8;
        slot **p = realloc(m->slots, (size_t)cap * sizeof *p);
        if (p == NULL)
            luaL_error(L, "out of memory");
        m->slots = p;
        m->slots_cap = cap;
    }
    s = malloc(sizeof *s);
    if (s == NULL)
        luaL_error(L, "out of memory");
    memset(s, 0, sizeof *s);
    ctc_easy_clear(&s->x);
    s->m = m;
    s->index = m->nslots + 1;
    s->x.owner = s;
    m->slots[m->nslots++] = s;
    return s;
}

/* The slot's easy handle, made on its first use. */
static CURLcode open_slot(lua_State *L, multi *m, slot *s)
{
    CURLcode rc;
    if (s->x.easy != NULL)
        return CURLE_OK;
    rc = ctc_easy_open(L, &s->x, &m->opts);
    if (rc != CURLE_OK)
        return rc;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(s->x.easy, opt, val)
    SET(CURLOPT_PRIVATE, (void *)s);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, (void *)m);
    SET(CURLOPT_CLOSESOCKETFUNCTION, on_close_socket);
    SET(CURLOPT_CLOSESOCKETDATA, (void *)m);
#if !CTC_CURL_GE(7, 80, 0)
    SET(CURLOPT_FORBID_REUSE, 1L); /* no pre-request check: never reuse (file header) */
#endif
#undef SET
    s->x.before_send = check_connection;
    if (rc != CURLE_OK) {
        curl_easy_cleanup(s->x.easy);
        s->x.easy = NULL;
    }
    return rc;
}

/* Takes a slot out of the multi; its transfer is over or abandoned. */
static void retire(multi *m, slot *s)
{
    curl_multi_remove_handle(m->multi, s->x.easy);
    s->busy = 0;
    m->in_flight--;
}

/* ================= the Lua object ================= */

static multi *check_open(lua_State *L)
{
    multi *m = luaL_checkudata(L, 1, MULTI_MT);
    if (m->closed)
        luaL_argerror(L, 1, "the clicktocall multi is closed");
    return m;
}

/* m:add(token, request [, tmp_path]) -> true | nil, err (as perform or download would return it) */
static int l_add(lua_State *L)
{
    multi *m = check_open(L);
    const char *tmp;
    slot *s;
    CURLcode rc;
    CURLMcode mc;
    int mode;

    luaL_checkany(L, 2);
    luaL_checktype(L, 3, LUA_TTABLE);
    tmp = luaL_optstring(L, 4, NULL);
    lua_settop(L, 4);
    lua_getfield(L, 3, "body_file");
    mode = tmp != NULL ? CTC_EASY_DOWNLOAD : lua_isnil(L, -1) ? CTC_EASY_SEND : CTC_EASY_UPLOAD;
    lua_pop(L, 1);
    s = free_slot(L, m);
    if ((rc = open_slot(L, m, s)) != CURLE_OK)
        return ctc_easy_push_start_error(L, rc);
    ctc_easy_prepare(L, &s->x, 3, mode); /* misuse raises: the slot stays free */
    get_tokens(L, 1);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, s->index);
    if (mode == CTC_EASY_DOWNLOAD && ctc_easy_create_file(L, &s->x, tmp) != 0)
        goto undo_token; /* nil, err on top */
    if (mode == CTC_EASY_UPLOAD && ctc_upload_open(L, &s->x, 3) != 0)
        goto undo_token;
    s->mode = mode;
    s->restarts = s->poisoned = 0;
    mc = curl_multi_add_handle(m->multi, s->x.easy);
    if (mc != CURLM_OK) {
        ctc_easy_abandon_file(&s->x);
        ctc_push_fail(L, "network", 0, "could not start libcurl: %s", curl_multi_strerror(mc));
        goto undo_token;
    }
    s->busy = 1;
    m->in_flight++;
    lua_pushboolean(L, 1);
    return 1;
undo_token:
    lua_pushnil(L);
    lua_rawseti(L, 5, s->index);
    return 2;
}

/* A transfer stopped by the pre-request check: start it again on a fresh
 * connection, once; 0, or pushes nil, err and returns 2. */
static int restart(lua_State *L, multi *m, slot *s)
{
    retire(m, s);
    s->poisoned = 0;
    if (s->restarts++ > 0) {
        ctc_push_fail(L, "protocol", 0, "the server sent bytes on a new connection before the request; "
                      "the request was not sent");
        goto refused;
    }
    if (ctc_easy_restart(&s->x) != 0) {
        ctc_push_fail(L, "io", 0, "could not empty (or rewind) the file to start the transfer again");
        goto refused;
    }
    curl_easy_setopt(s->x.easy, CURLOPT_FRESH_CONNECT, 1L);
    if (curl_multi_add_handle(m->multi, s->x.easy) != CURLM_OK) {
        ctc_push_fail(L, "network", 0, "could not start libcurl again");
        goto refused;
    }
    s->busy = 1;
    m->in_flight++;
    return 0;
refused:
    ctc_easy_abandon_file(&s->x);
    lua_pushinteger(L, (lua_Integer)CURLE_ABORTED_BY_CALLBACK);
    lua_setfield(L, -2, "code");
    lua_pushliteral(L, "CURLE_ABORTED_BY_CALLBACK");
    lua_setfield(L, -2, "code_name");
    return 2;
}

/* Appends { token, res } or { token, nil, err } for a finished slot to the array at out. */
static void push_done(lua_State *L, int out, int *n, slot *s, int values)
{
    /* values (1: res, 2: nil, err) are on top */
    lua_createtable(L, 3, 0);
    get_tokens(L, 1);
    lua_rawgeti(L, -1, s->index);
    lua_rawseti(L, -3, 1);
    lua_pushnil(L);
    lua_rawseti(L, -2, s->index); /* the token is handed back: drop our reference */
    lua_pop(L, 1);
    lua_insert(L, -1 - values);
    if (values == 1) {
        lua_rawseti(L, -2, 2);
    } else {
        lua_rawseti(L, -3, 3);
        lua_pop(L, 1);
    }
    lua_rawseti(L, out, ++*n);
}

/* Reads libcurl's finished transfers into the array at out; returns how many. */
static int collect(lua_State *L, multi *m, int out, int n)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        slot *s;
        int values;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        s = (slot *)(void *)priv;
        if (s == NULL || !s->busy)
            continue;
        if (s->poisoned && !s->x.resend_refused) {
            if (restart(L, m, s) != 0) /* else in flight again */
                push_done(L, out, &n, s, 2);
            continue;
        }
        /* out of the multi before anything can raise: the slot is consistent */
        retire(m, s);
        if (s->mode == CTC_EASY_DOWNLOAD)
            values = ctc_easy_finish_download(L, &s->x, rc);
        else if (s->mode == CTC_EASY_UPLOAD)
            values = ctc_upload_finish(L, &s->x, rc);
        else
            values = ctc_easy_push_result(L, &s->x, rc);
        push_done(L, out, &n, s, values);
    }
    return n;
}

/* Whether a transfer in flight has not reached the sending of its request
 * (the pre-request callback comes just before it; with libcurl before 7.80,
 * always "maybe"). */
static int unsent(const multi *m)
{
    int i;
    for (i = 0; i < m->nslots; i++)
        if (m->slots[i]->busy && m->slots[i]->x.prereq_calls == 0)
            return 1;
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* m:wait(max_seconds) -> array of { token, res } | { token, nil, err } (maybe empty) */
static int l_wait(lua_State *L)
{
    multi *m = check_open(L);
    lua_Number max = luaL_optnumber(L, 2, 0);
    double deadline;
    int n = 0, out, rounds = 0;

    if (!(max > 0))
        max = 0;
    else if (max > 86400)
        max = 86400;
    deadline = now() + max;
    lua_settop(L, 2);
    lua_newtable(L);
    out = lua_gettop(L);
    for (;;) {
        int running = 0;
        double left;
        CURLMcode mc = curl_multi_perform(m->multi, &running);
        if (mc != CURLM_OK)
            return luaL_error(L, "libcurl multi: %s", curl_multi_strerror(mc));
        n = collect(L, m, out, n);
        if (n > 0 || m->in_flight == 0)
            break;
        left = deadline - now();
        if (left <= 0) {
            /* no time left: go on only while a request has yet to go out and a
             * socket gets ready within 1 ms (a new connection's connect, which
             * takes microseconds on a near host: its request goes now, not at the
             * next wait); never wait for answers */
            int ready = 0;
            if (++rounds > 8 || !unsent(m) || curl_multi_wait(m->multi, NULL, 0, 1, &ready) != CURLM_OK ||
                ready == 0)
                break;
            continue;
        }
#if CTC_CURL_GE(7, 66, 0)
        mc = curl_multi_poll(m->multi, NULL, 0, (int)ceil(left * 1000), NULL);
#else
        mc = curl_multi_wait(m->multi, NULL, 0, (int)ceil(left * 1000), NULL);
#endif
        if (mc != CURLM_OK)
            return luaL_error(L, "libcurl multi: %s", curl_multi_strerror(mc));
    }
    return 1;
}

static int l_count(lua_State *L)
{
    multi *m = check_open(L);
    lua_pushinteger(L, m->in_flight);
    return 1;
}

/* One idempotent closer for close(), __gc and __close: transfers in flight
 * are dropped and their unfinished files removed. */
static int l_close(lua_State *L)
{
    multi *m = luaL_checkudata(L, 1, MULTI_MT);
    int i;
    if (m->closed)
        return 0;
    m->closed = 1;
    for (i = 0; i < m->nslots; i++) {
        slot *s = m->slots[i];
        if (s->busy) {
            retire(m, s);
            ctc_easy_abandon_file(&s->x);
        }
    }
    /* closes the cached connections through on_close_socket: m is still whole */
    if (m->multi != NULL)
        curl_multi_cleanup(m->multi);
    m->multi = NULL;
    for (i = 0; i < m->nslots; i++) {
        ctc_easy_release(&m->slots[i]->x);
        free(m->slots[i]);
    }
    free(m->slots);
    m->slots = NULL;
    m->nslots = m->slots_cap = 0;
    free(m->socks);
    m->socks = NULL;
    m->nsocks = m->socks_cap = 0;
    ctc_curl_opts_free(&m->opts);
    lua_newtable(L); /* let go of every token */
    set_tokens(L, 1);
    return 0;
}

static int l_tostring(lua_State *L)
{
    multi *m = luaL_checkudata(L, 1, MULTI_MT);
    if (m->closed)
        lua_pushliteral(L, "clicktocall.curl_multi (closed)");
    else
        lua_pushfstring(L, "clicktocall.curl_multi (%d in flight)", m->in_flight);
    return 1;
}

/* core.curl_multi{ ca_file=, insecure=, proxy=, max_connections= } -> multi | nil, message */
static int l_new(lua_State *L)
{
    multi *m;
    lua_Number maxc = 0;
    if (!lua_isnoneornil(L, 1))
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "max_connections");
        if (!lua_isnil(L, -1)) {
            maxc = lua_tonumber(L, -1);
            if (lua_type(L, -1) != LUA_TNUMBER || maxc != floor(maxc) || maxc < 1 || maxc > 1024)
                luaL_argerror(L, 1, "field 'max_connections' must be an integer from 1 to 1024");
        }
        lua_pop(L, 1);
    }
    /* consistent (closed-safe) before anything can fail */
    m = new_userdata(L, sizeof *m);
    memset(m, 0, sizeof *m);
    luaL_getmetatable(L, MULTI_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L);
    set_tokens(L, -2);
    if (ctc_curl_opts_read(L, 1, &m->opts) != 0 || (m->multi = curl_multi_init()) == NULL) {
        return ctc_push_fail(L, "network", 0, "could not start libcurl: out of memory");
    }
    if (maxc > 0) {
        /* more transfers than connections wait inside libcurl for one to free */
        curl_multi_setopt(m->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)maxc);
        curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)maxc);
    }
    return 1;
}

static const luaL_Reg multi_methods[] = {
    { "add", l_add },
    { "wait", l_wait },
    { "count", l_count },
    { "close", l_close },
    { NULL, NULL },
};

static const luaL_Reg multi_meta[] = {
    { "__gc", l_close },
    { "__close", l_close },
    { "__tostring", l_tostring },
    { NULL, NULL },
};

void ctc_open_multi(lua_State *L)
{
    if (luaL_newmetatable(L, MULTI_MT)) {
        ctc_setfuncs(L, multi_meta);
        lua_newtable(L);
        ctc_setfuncs(L, multi_methods);
        lua_setfield(L, -2, "__index");
        lua_pushliteral(L, "clicktocall.curl_multi");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "curl_multi");
}
