/*
 * ctc_easy (easy.h): one libcurl easy handle and the C memory of the request
 * it carries, shared by the single transport (curl.c) and the batch one
 * (multi.c).
 *
 * The callbacks touch only this C memory (no Lua call, no stored lua_State);
 * results and errors are pushed after libcurl returns. Every body is handed to
 * libcurl whole (POSTFIELDS), so headers and body leave in one write. When a
 * reused connection dies after the request went out, libcurl silently sends it
 * again on a fresh one; for a request marked resend_safe = false (a dial) the
 * pre-request callback counts its calls within one transfer and aborts the
 * second, so the server can never see a dial twice (the error says
 * sent = true: the first may have arrived).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "easy.h"

/* What an easy handle costs outside Lua's heap (measured: curl_easy_init plus its
 * first transfer, with libcurl 7.88), told to the collector when one is made. */
#define HANDLE_KIB 18

/* ================= callbacks: C memory only ================= */

#if CTC_CURL_GE(7, 80, 0)
/* Called once per connection a request is about to be sent on: a second call
 * within one transfer is libcurl re-sending it (see the file header). */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip,
                     int conn_primary_port, int conn_local_port)
{
    ctc_easy *x = ud;
    if (++x->prereq_calls > 1 && !x->resend_safe) {
        x->resend_refused = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    /* the batch transport's check of the connection this request goes on */
    if (x->before_send != NULL &&
        x->before_send(x, conn_local_ip, conn_local_port, conn_primary_ip, conn_primary_port) != 0)
        return CURL_PREREQFUNC_ABORT;
    return CURL_PREREQFUNC_OK;
}
#else
/* Before 7.80 there is no pre-request callback: such a request's body goes
 * through a read callback that cannot rewind, so libcurl fails with
 * CURLE_SEND_FAIL_REWIND instead of re-sending (at the cost of two writes). */
static size_t on_read(char *dst, size_t size, size_t nitems, void *ud)
{
    ctc_easy *x = ud;
    size_t n = size * nitems, left = x->req_body.len - x->req_pos;
    if (x->up_fd >= 0)
        return ctc_upload_read(dst, size, nitems, ud);
    if (n > left)
        n = left;
    if (n > 0) {
        memcpy(dst, x->req_body.data + x->req_pos, n);
        x->req_pos += n;
    }
    return n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    (void)ud; (void)offset; (void)origin;
    return CURL_SEEKFUNC_CANTSEEK;
}
#endif

/* a header line's length without its line end */
static size_t line_len(const char *p, size_t n)
{
    if (n > 0 && p[n - 1] == '\n')
        n--;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    return n;
}

static size_t on_header(char *p, size_t size, size_t nitems, void *ud)
{
    ctc_easy *x = ud;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        ctc_buf_reset(&x->head); /* a new response (1xx, redirect): keep the last */
        x->head_done = 0;
        x->head_lines = 0;
        x->head_bytes = 0;
    } else if (line_len(p, n) == 0) {
        x->head_done = 1;
    } else {
        /* the limits the ngx transport keeps too (core.LIMITS) */
        x->head_bytes += line_len(p, n);
        if (++x->head_lines > CTC_HEADER_LINES || x->head_bytes > CTC_HEADER_BYTES) {
            x->head_too_large = 1; /* reported after perform returns */
            return 0;
        }
    }
    if (ctc_buf_append(&x->head, p, n) != 0)
        return 0;
    return n;
}

static int is_success(ctc_easy *x)
{
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    return status >= 200 && status < 300;
}

static size_t on_write(char *p, size_t size, size_t nitems, void *ud)
{
    ctc_easy *x = ud;
    size_t n = size * nitems;
    if (x->fd >= 0) {
        if (!is_success(x))
            return n; /* a download's error page: its status says it all */
        if (ctc_write_all(x->fd, p, n) != 0) {
            x->write_failed = errno;
            return 0;
        }
        ctc_sha256_update(&x->sha, p, n);
        x->bytes += n;
        return n;
    }
    if (x->max_body >= 0 && (curl_off_t)(x->body.len + n) > x->max_body) {
        x->too_large = 1;
        return 0; /* aborts the transfer: never buffer first and check after */
    }
    if (ctc_buf_append(&x->body, p, n) != 0)
        return 0;
    return n;
}

/* ================= options, handle ================= */

/* A malloc'd copy of the string field, or NULL when absent; 0 or -1 (no memory). */
static int copy_option(lua_State *L, int opts, const char *name, char **out)
{
    size_t n;
    const char *s;
    lua_getfield(L, opts, name);
    s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (s != NULL && (*out = malloc(n + 1)) != NULL)
        memcpy(*out, s, n + 1);
    lua_pop(L, 1);
    return s != NULL && *out == NULL ? -1 : 0;
}

int ctc_curl_opts_read(lua_State *L, int opts, ctc_curl_opts *o)
{
    if (!lua_istable(L, opts))
        return 0;
    if (copy_option(L, opts, "ca_file", &o->ca_file) != 0 || copy_option(L, opts, "proxy", &o->proxy) != 0)
        return -1;
    lua_getfield(L, opts, "insecure");
    o->insecure = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return 0;
}

void ctc_curl_opts_free(ctc_curl_opts *o)
{
    free(o->ca_file);
    free(o->proxy);
    o->ca_file = o->proxy = NULL;
}

void ctc_easy_clear(ctc_easy *x)
{
    memset(x, 0, sizeof *x);
    x->fd = -1;
    x->up_fd = -1;
    x->last_sock = CURL_SOCKET_BAD;
}

void ctc_easy_release(ctc_easy *x)
{
    ctc_upload_close(x);
    if (x->easy != NULL) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
    }
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    ctc_buf_free(&x->hdr_key);
    ctc_buf_free(&x->hdr_next);
    ctc_buf_free(&x->url);
    ctc_buf_free(&x->req_body);
    ctc_buf_free(&x->path);
    ctc_buf_free(&x->head);
    ctc_buf_free(&x->body);
    if (x->fd >= 0) {
        close(x->fd);
        x->fd = -1;
    }
}

/* Options that never change for a handle. CURLE_OK or a curl code. */
static CURLcode set_fixed(ctc_easy *x, const ctc_curl_opts *o)
{
    CURLcode rc = CURLE_OK;
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(x->easy, opt, val)
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
#if CTC_CURL_GE(7, 85, 0)
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
#if CTC_CURL_GE(7, 80, 0)
    SET(CURLOPT_PREREQFUNCTION, on_prereq);
    SET(CURLOPT_PREREQDATA, x);
#else
    SET(CURLOPT_READFUNCTION, on_read);
    SET(CURLOPT_READDATA, x);
    SET(CURLOPT_SEEKFUNCTION, on_seek);
    SET(CURLOPT_SEEKDATA, x);
#endif
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, x);
    SET(CURLOPT_SSL_VERIFYPEER, o->insecure ? 0L : 1L);
    SET(CURLOPT_SSL_VERIFYHOST, o->insecure ? 0L : 2L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    if (o->ca_file != NULL)
        SET(CURLOPT_CAINFO, o->ca_file);
    if (o->proxy != NULL)
        SET(CURLOPT_PROXY, o->proxy);
#undef SET
    return rc;
}

CURLcode ctc_easy_open(lua_State *L, ctc_easy *x, const ctc_curl_opts *o)
{
    CURLcode rc;
    x->easy = curl_easy_init();
    x->opts_set = 0; /* a new handle (a poisoned connection's is dropped) has none of them */
    if (x->easy == NULL)
        return CURLE_FAILED_INIT;
    rc = set_fixed(x, o);
    if (rc != CURLE_OK) {
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
        return rc;
    }
    x->last_sock = CURL_SOCKET_BAD;
    /* the handle's memory is outside Lua's heap: let the collector count it */
    lua_gc(L, LUA_GCSTEP, HANDLE_KIB);
    return CURLE_OK;
}

/* ================= the request ================= */

/* seconds (the number at idx; anything else or <= 0: dflt) -> ms for libcurl */
static long ms_value(lua_State *L, int idx, long dflt)
{
    lua_Number v = lua_isnumber(L, idx) ? lua_tonumber(L, idx) : -1;
    if (!(v > 0))
        return dflt;
    /* the longest wait a long holds in ms (24 days on a 32-bit long): never
     * the default, which would turn a long timeout into a short one */
    if (v > (double)LONG_MAX / 1000 - 1)
        v = (double)LONG_MAX / 1000 - 1;
    v = ceil(v * 1000);
    return v < 1 ? 1 : (long)v;
}

static long ms_field(lua_State *L, int req, const char *name, long dflt)
{
    long ms;
    lua_getfield(L, req, name);
    ms = ms_value(L, -1, dflt);
    lua_pop(L, 1);
    return ms;
}

/* max_body (the number at idx, else the default) -> the limit, < 0 for none */
static curl_off_t body_limit(lua_State *L, int idx)
{
    lua_Number v;
    if (!lua_isnumber(L, idx))
        return CTC_DEFAULT_MAX_BODY;
    /* checked as a double: a cast of NaN or 1e300 is undefined behaviour */
    v = lua_tonumber(L, idx);
    if (v != v)
        return CTC_DEFAULT_MAX_BODY;
    return v < 0 || v >= CTC_EXACT_DOUBLE_MAX ? -1 : (curl_off_t)v;
}

/* The options that vary between requests, given to libcurl only when they differ from the last. */
static void set_changed(ctc_easy *x, long timeout, long connect_timeout, long follow, curl_off_t maxfile)
{
    if (!x->opts_set || timeout != x->set_timeout)
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout);
    if (!x->opts_set || connect_timeout != x->set_connect_timeout)
        curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout);
    if (!x->opts_set || follow != x->set_follow)
        curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, follow);
    if (!x->opts_set || maxfile != x->set_maxfile)
        curl_easy_setopt(x->easy, CURLOPT_MAXFILESIZE_LARGE, maxfile);
    if (!x->opts_set)
        curl_easy_setopt(x->easy, CURLOPT_MAXREDIRS, (long)CTC_MAX_REDIRECTS);
    x->set_timeout = timeout;
    x->set_connect_timeout = connect_timeout;
    x->set_follow = follow;
    x->set_maxfile = maxfile;
    x->opts_set = 1;
}

/* What one attempt of a transfer leaves behind, forgotten. */
static void reset_transfer(ctc_easy *x)
{
    ctc_buf_reset(&x->head);
    ctc_buf_reset(&x->body);
    x->req_pos = 0;
    x->prereq_calls = x->resend_refused = x->too_large = x->write_failed = 0;
    x->head_done = x->head_too_large = x->head_lines = 0;
    x->head_bytes = 0;
    x->bytes = 0;
    x->errbuf[0] = '\0';
}

/* The list for the header lines in x->hdr_next, read from the table at t (0: none): the last
 * request's list when the lines are the same (the usual case), else a new one. */
static void keep_headers(lua_State *L, ctc_easy *x, int t)
{
    struct curl_slist *list;
    x->hdr_table = NULL; /* until the list below is whole */
    if (x->headers == NULL || x->hdr_next.len != x->hdr_key.len ||
        (x->hdr_next.len > 0 && memcmp(x->hdr_next.data, x->hdr_key.data, x->hdr_next.len) != 0)) {
        char *line, *nl;
        ctc_buf tmp;
        curl_slist_free_all(x->headers);
        x->headers = NULL;
        ctc_buf_reset(&x->hdr_key);
        /* "Expect:" off: a 100-continue round trip only adds latency here */
        x->headers = curl_slist_append(NULL, "Expect:");
        if (x->headers == NULL)
            luaL_error(L, "out of memory");
        for (line = x->hdr_next.data; line != NULL && (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
            *nl = '\0';
            list = curl_slist_append(x->headers, line);
            *nl = '\n';
            if (list == NULL)
                luaL_error(L, "out of memory");
            x->headers = list;
        }
        tmp = x->hdr_key; /* swap: what the list now holds becomes the key */
        x->hdr_key = x->hdr_next;
        x->hdr_next = tmp;
    }
    if (x->hdr_anchor) {
        lua_pushlightuserdata(L, x);
        if (t != 0)
            lua_pushvalue(L, t);
        else
            lua_pushnil(L);
        lua_rawset(L, LUA_REGISTRYINDEX);
        x->hdr_table = t != 0 ? lua_topointer(L, t) : NULL;
    }
}

void ctc_easy_unanchor(lua_State *L, ctc_easy *x)
{
    if (x->hdr_table != NULL) {
        lua_pushlightuserdata(L, x);
        lua_pushnil(L);
        lua_rawset(L, LUA_REGISTRYINDEX);
        x->hdr_table = NULL;
    }
}

/* The URL (the last one's kept when the same: each setopt of a URL copies and parses it) */
static void set_url(lua_State *L, ctc_easy *x, int idx)
{
    size_t n;
    const char *s = luaL_checklstring(L, idx, &n);
    if (!x->opts_set || n != x->url.len || memcmp(s, x->url.data, n) != 0) {
        x->opts_set = 0; /* until every option of set_changed was given again */
        if (ctc_buf_set(&x->url, s, n) != 0)
            luaL_error(L, "out of memory");
        curl_easy_setopt(x->easy, CURLOPT_URL, x->url.data);
    }
}

/* The header list from the table at idx (anything else: none) */
static void set_headers(lua_State *L, ctc_easy *x, int idx)
{
    ctc_buf_reset(&x->hdr_next);
    if (x->hdr_anchor && x->headers != NULL && lua_istable(L, idx) && lua_topointer(L, idx) == x->hdr_table) {
        ; /* the table the list was made from (see easy.h): nothing to read */
    } else if (lua_istable(L, idx)) {
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            size_t kn, vn;
            const char *k = lua_tolstring(L, -2, &kn), *v = lua_tolstring(L, -1, &vn);
            if (k == NULL || v == NULL || strpbrk(k, "\r\n:") || strpbrk(v, "\r\n"))
                luaL_error(L, "request header names and values must be strings without CR, LF");
            if (ctc_buf_append(&x->hdr_next, k, kn) != 0 || ctc_buf_append(&x->hdr_next, ": ", 2) != 0 ||
                ctc_buf_append(&x->hdr_next, v, vn) != 0 || ctc_buf_append(&x->hdr_next, "\n", 1) != 0)
                luaL_error(L, "out of memory");
            lua_pop(L, 1);
        }
        keep_headers(L, x, idx);
    } else {
        keep_headers(L, x, 0);
    }
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
}

/* A POST of x->req_body */
static void set_post(ctc_easy *x)
{
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->req_body.len);
#if CTC_CURL_GE(7, 80, 0)
    /* the whole body: libcurl writes it with the headers, in one send */
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->req_body.len > 0 ? x->req_body.data : "");
#else
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->resend_safe && x->req_body.len > 0 ? x->req_body.data : NULL);
#endif
}

/* Misuse (not the caller's data, which the Lua layer checked) raises. */
void ctc_easy_prepare(lua_State *L, ctc_easy *x, int req, int mode)
{
    int download = mode == CTC_EASY_DOWNLOAD;
    const char *method;
    size_t n;
    const char *s;

    reset_transfer(x);
    ctc_buf_reset(&x->req_body);

    lua_getfield(L, req, "url");
    set_url(L, x, lua_gettop(L));
    lua_pop(L, 1);
    lua_getfield(L, req, "method");
    method = luaL_optstring(L, -1, "GET");
    lua_getfield(L, req, "body");
    s = lua_tolstring(L, -1, &n);
    if (s != NULL && ctc_buf_set(&x->req_body, s, n) != 0)
        luaL_error(L, "out of memory");
    lua_pop(L, 1);

    lua_getfield(L, req, "headers");
    set_headers(L, x, lua_gettop(L));
    lua_pop(L, 1);

    lua_getfield(L, req, "max_body");
    x->max_body = body_limit(L, -1);
    lua_pop(L, 1);

    curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 0L); /* a batch may have set it for the last one */
    set_changed(x, ms_field(L, req, "timeout", CTC_DEFAULT_TIMEOUT_MS),
                ms_field(L, req, "connect_timeout", CTC_DEFAULT_CONNECT_TIMEOUT_MS), download ? 1L : 0L,
                (curl_off_t)(download || x->max_body < 0 ? 0 : x->max_body));
    lua_getfield(L, req, "want_headers");
    x->want_headers = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (download) {
        /* absent means fsync: only archive_recordings, which fsyncs a turn's files at once, says false */
        lua_getfield(L, req, "sync");
        x->sync = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
        /* the file's mode at open(), so it never exists wider (the umask can only narrow it) */
        lua_getfield(L, req, "mode");
        x->mode = lua_type(L, -1) == LUA_TNUMBER && lua_tonumber(L, -1) >= 0 && lua_tonumber(L, -1) <= 0777
            ? (int)lua_tonumber(L, -1) : 0666;
        lua_pop(L, 1);
    }
    /* absent means safe: only the core's dial says false */
    lua_getfield(L, req, "resend_safe");
    x->resend_safe = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (strcmp(method, "POST") == 0 && mode != CTC_EASY_UPLOAD) {
        set_post(x);
    } else if (strcmp(method, "GET") == 0 && mode != CTC_EASY_UPLOAD) {
        curl_easy_setopt(x->easy, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0 && mode == CTC_EASY_SEND) {
        curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 0L); /* a PUT before it left libcurl's upload flag */
        curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "PUT") == 0 && mode == CTC_EASY_UPLOAD) {
        /* ctc_upload_open gives libcurl the file */
    } else {
        luaL_error(L, "unsupported method '%s'", method);
    }
    lua_pop(L, 1);
}

void ctc_easy_prepare_dial(lua_State *L, ctc_easy *x, int url, int headers, int limits)
{
    reset_transfer(x);
    set_url(L, x, url);
    set_headers(L, x, headers);
    x->max_body = body_limit(L, limits + 2);
    curl_easy_setopt(x->easy, CURLOPT_FRESH_CONNECT, 0L);
    set_changed(x, ms_value(L, limits, CTC_DEFAULT_TIMEOUT_MS),
                ms_value(L, limits + 1, CTC_DEFAULT_CONNECT_TIMEOUT_MS), 0L,
                (curl_off_t)(x->max_body < 0 ? 0 : x->max_body));
    x->want_headers = 0;  /* a dial's 2xx headers are never read */
    x->resend_safe = 0;   /* a dial must never go twice */
    set_post(x);
}

/* ================= results ================= */

/* Pushes s[0..n) in lower case: header names are case-insensitive. */
static void push_lower(lua_State *L, const char *s, size_t n)
{
    char name[128];
    size_t j;
    if (n <= sizeof name) { /* the usual case: lower-cased on the C stack, one push */
        for (j = 0; j < n; j++)
            name[j] = (char)((s[j] >= 'A' && s[j] <= 'Z') ? s[j] + 32 : s[j]);
        lua_pushlstring(L, name, n);
    } else {
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        for (j = 0; j < n; j++)
            luaL_addchar(&b, (char)((s[j] >= 'A' && s[j] <= 'Z') ? s[j] + 32 : s[j]));
        luaL_pushresult(&b);
    }
}

static void push_headers(lua_State *L, const ctc_buf *head)
{
    const char *p = head->data, *end;
    lua_newtable(L);
    if (p == NULL)
        return;
    end = p + head->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol ? eol : end, *colon;
        const char *next = eol ? eol + 1 : end;
        while (line_end > p && (line_end[-1] == '\r' || line_end[-1] == ' ' || line_end[-1] == '\t'))
            line_end--;
        colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && colon > p && memcmp(p, "HTTP/", 5) != 0) {
            const char *v;
            push_lower(L, p, (size_t)(colon - p));
            for (v = colon + 1; v < line_end && (*v == ' ' || *v == '\t'); v++)
                ;
            lua_pushvalue(L, -1);
            lua_rawget(L, -3);
            if (lua_isstring(L, -1)) { /* a repeated header: join as RFC 9110 says */
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, v, (size_t)(line_end - v));
                lua_concat(L, 3);
            } else {
                lua_pop(L, 1);
                lua_pushlstring(L, v, (size_t)(line_end - v));
            }
            lua_rawset(L, -3);
        }
        p = next;
    }
}

static void push_response(lua_State *L, ctc_easy *x, int headers)
{
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    if (headers || status < 200 || status > 299)
        push_headers(L, &x->head);
    else
        lua_createtable(L, 0, 0); /* a 2xx the caller reads no header of */
    lua_setfield(L, -2, "headers");
    lua_pushlstring(L, x->body.data ? x->body.data : "", x->body.len);
    lua_setfield(L, -2, "body");
}

static const char *code_name(CURLcode rc)
{
    switch (rc) {
    case CURLE_UNSUPPORTED_PROTOCOL: return "CURLE_UNSUPPORTED_PROTOCOL";
    case CURLE_URL_MALFORMAT: return "CURLE_URL_MALFORMAT";
    case CURLE_COULDNT_RESOLVE_PROXY: return "CURLE_COULDNT_RESOLVE_PROXY";
    case CURLE_COULDNT_RESOLVE_HOST: return "CURLE_COULDNT_RESOLVE_HOST";
    case CURLE_COULDNT_CONNECT: return "CURLE_COULDNT_CONNECT";
    case CURLE_WEIRD_SERVER_REPLY: return "CURLE_WEIRD_SERVER_REPLY";
    case CURLE_PARTIAL_FILE: return "CURLE_PARTIAL_FILE";
    case CURLE_WRITE_ERROR: return "CURLE_WRITE_ERROR";
    case CURLE_OUT_OF_MEMORY: return "CURLE_OUT_OF_MEMORY";
    case CURLE_OPERATION_TIMEDOUT: return "CURLE_OPERATION_TIMEDOUT";
    case CURLE_TOO_MANY_REDIRECTS: return "CURLE_TOO_MANY_REDIRECTS";
    case CURLE_GOT_NOTHING: return "CURLE_GOT_NOTHING";
    case CURLE_SSL_CONNECT_ERROR: return "CURLE_SSL_CONNECT_ERROR";
    case CURLE_PEER_FAILED_VERIFICATION: return "CURLE_PEER_FAILED_VERIFICATION";
    case CURLE_SEND_ERROR: return "CURLE_SEND_ERROR";
    case CURLE_RECV_ERROR: return "CURLE_RECV_ERROR";
    case CURLE_SSL_CACERT_BADFILE: return "CURLE_SSL_CACERT_BADFILE";
    case CURLE_FILESIZE_EXCEEDED: return "CURLE_FILESIZE_EXCEEDED";
    case CURLE_SEND_FAIL_REWIND: return "CURLE_SEND_FAIL_REWIND";
    case CURLE_ABORTED_BY_CALLBACK: return "CURLE_ABORTED_BY_CALLBACK";
    default: return "CURLE_ERROR";
    }
}

/* Could any request byte have reached the server? Only "no" when the
 * failure is one that happens before a request is written, libcurl counted
 * no request bytes and the body was never handed out. */
static int may_have_sent(ctc_easy *x, CURLcode rc)
{
    curl_off_t req_size = 0;
    long size = 0;
    curl_easy_getinfo(x->easy, CURLINFO_REQUEST_SIZE, &size);
    req_size = size;
    if (x->resend_refused || req_size > 0)
        return 1;
#if !CTC_CURL_GE(7, 80, 0)
    if (x->req_pos > 0) /* the read callback handed out body bytes */
        return 1;
#endif
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
    case CURLE_FAILED_INIT:
        return 0;
    default:
        return 1;
    }
}

/* the libcurl code on the error table on top */
static int add_code(lua_State *L, CURLcode rc)
{
    lua_pushinteger(L, (lua_Integer)rc);
    lua_setfield(L, -2, "code");
    lua_pushstring(L, code_name(rc));
    lua_setfield(L, -2, "code_name");
    return 2;
}

static int push_error(lua_State *L, ctc_easy *x, CURLcode rc)
{
    const char *kind = "network";
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    int sent = may_have_sent(x, rc);
    if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        char n[CTC_I64_LEN];
        ctc_push_fail(L, "protocol", sent, "response body is larger than max_body (%s bytes)",
                      ctc_i64_str(n, (int64_t)x->max_body));
    } else if (x->head_too_large || (rc == CURLE_OUT_OF_MEMORY && !x->head_done)) {
        /* libcurl 7.88 refuses one header line over 100 KB as "out of memory" */
        ctc_push_fail(L, "protocol", sent, "the response headers exceed %d lines or %d bytes",
                      CTC_HEADER_LINES, CTC_HEADER_BYTES);
    } else if (x->write_failed) {
        /* a local failure (a full disk): fetching again would fail the same way */
        ctc_push_fail(L, "io", 1, "could not write the file: %s", strerror(x->write_failed));
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "retryable");
    } else {
        if (rc == CURLE_OPERATION_TIMEDOUT)
            kind = "timeout";
        else if (rc == CURLE_SEND_FAIL_REWIND || x->resend_refused)
            detail = "the connection closed after the request went out and before any answer; "
                     "it was not sent again (the server may have processed it)";
        else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_TOO_MANY_REDIRECTS)
            kind = "protocol";
        ctc_push_fail(L, kind, sent, "%s", detail);
    }
    return add_code(L, rc);
}

/* nil, err: the easy handle could not be made; nothing was sent */
int ctc_easy_push_start_error(lua_State *L, CURLcode rc)
{
    ctc_push_fail(L, "network", 0, "could not start libcurl: %s", curl_easy_strerror(rc));
    return add_code(L, rc);
}

/* ================= what perform and download return ================= */

int ctc_easy_push_result(lua_State *L, ctc_easy *x, CURLcode rc)
{
    if (rc != CURLE_OK)
        return push_error(L, x, rc);
    push_response(L, x, x->want_headers);
    ctc_buf_reset(&x->body);
    return 1;
}

int ctc_easy_restart(ctc_easy *x)
{
    reset_transfer(x);
    if (x->fd >= 0) {
        ctc_sha256_init(&x->sha);
        if (ftruncate(x->fd, 0) != 0 || lseek(x->fd, 0, SEEK_SET) != 0)
            return -1;
    }
    return x->up_fd >= 0 ? ctc_upload_rewind(x) : 0;
}

int ctc_easy_create_file(lua_State *L, ctc_easy *x, const char *path)
{
    if (ctc_buf_set(&x->path, path, strlen(path)) != 0)
        luaL_error(L, "out of memory");
    x->fd = ctc_open_retry(path, O_WRONLY | O_CREAT | O_EXCL, (mode_t)x->mode);
    if (x->fd < 0) {
        lua_pushfstring(L, "could not create %s: %s", path, strerror(errno));
        return ctc_push_fail_top(L, "argument", 0);
    }
    ctc_sha256_init(&x->sha);
    return 0;
}

void ctc_easy_abandon_file(ctc_easy *x)
{
    ctc_upload_close(x);
    if (x->fd >= 0) {
        close(x->fd);
        x->fd = -1;
        if (x->path.data != NULL)
            unlink(x->path.data);
    }
}

/* The body went to x->fd as it came (on_write); a whole 2xx one is kept,
 * fsynced here unless the caller makes it durable itself (x->sync == 0: the
 * file is then whole but maybe only in the page cache; see archive.lua). */
int ctc_easy_finish_download(lua_State *L, ctc_easy *x, CURLcode rc)
{
    curl_off_t expected = -1;
    int ok;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &expected);
    ok = rc == CURLE_OK && (!is_success(x) || expected < 0 || (uint64_t)expected == x->bytes);
    if (ok && is_success(x) && x->sync && fsync(x->fd) != 0) {
        x->write_failed = errno;
        ok = 0;
    }
    if (close(x->fd) != 0 && ok) {
        x->write_failed = errno;
        ok = 0;
    }
    x->fd = -1;
    if (!ok || !is_success(x))
        unlink(x->path.data); /* never leave a partial file behind */
    if (rc != CURLE_OK || x->write_failed)
        return push_error(L, x, rc != CURLE_OK ? rc : CURLE_WRITE_ERROR);
    if (!ok) {
        char got[CTC_I64_LEN], want[CTC_I64_LEN];
        lua_pushfstring(L, "recording cut short: got %s of %s bytes", ctc_i64_str(got, (int64_t)x->bytes),
                        ctc_i64_str(want, (int64_t)expected));
        return ctc_push_fail_top(L, "network", 1);
    }
    push_response(L, x, 1);
    lua_pushnumber(L, (lua_Number)x->bytes);
    lua_setfield(L, -2, "bytes");
    if (is_success(x)) {
        unsigned char digest[32];
        ctc_sha256_final(&x->sha, digest);
        ctc_push_hex(L, digest, sizeof digest);
        lua_setfield(L, -2, "sha256");
    }
    ctc_buf_reset(&x->body);
    return 1;
}
