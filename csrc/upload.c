/*
 * Uploads: a PUT whose body is streamed from a file, request.body_file, body_size bytes
 * of it, never whole in memory. The read callback hands libcurl the file a buffer at a time; it
 * touches only the ctc_easy's C memory, and a read that fails (or a file that ends early: it
 * changed under us) aborts the transfer, reported as kind "io" once libcurl has returned. The
 * descriptor belongs to the ctc_easy from ctc_upload_open until ctc_upload_close, which finish,
 * abandon (a multi closed with the transfer in flight) and release all call: no path leaks it.
 * A seek callback lets libcurl rewind (a PUT is idempotent: the same bytes may go again).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "easy.h"

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif

size_t ctc_upload_read(char *dst, size_t size, size_t nitems, void *ud)
{
    ctc_easy *x = ud;
    size_t want = size * nitems;
    ssize_t got;
    if (x->up_fd < 0 || x->up_sent >= x->up_size)
        return 0;
    if ((uint64_t)want > x->up_size - x->up_sent)
        want = (size_t)(x->up_size - x->up_sent);
    do
        got = read(x->up_fd, dst, want);
    while (got < 0 && errno == EINTR);
    if (got <= 0) {
        x->up_errno = got < 0 ? errno : -1;
        return CURL_READFUNC_ABORT;
    }
    x->up_sent += (uint64_t)got;
    return (size_t)got;
}

static int on_upload_seek(void *ud, curl_off_t offset, int origin)
{
    ctc_easy *x = ud;
    if (x->up_fd < 0 || origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->up_size)
        return CURL_SEEKFUNC_CANTSEEK;
    if (lseek(x->up_fd, (off_t)offset, SEEK_SET) != (off_t)offset)
        return CURL_SEEKFUNC_FAIL;
    x->up_sent = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* nil, err (nothing was sent) with the sentence on top; returns 2 */
static int fail(lua_State *L, const char *kind)
{
    ctc_push_fail_top(L, kind, 0);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "retryable");
    return 2;
}

int ctc_upload_open(lua_State *L, ctc_easy *x, int req)
{
    const char *path;
    lua_Number size;
    struct stat sb;
    int fd;

    ctc_upload_close(x);
    lua_getfield(L, req, "body_file");
    path = lua_tostring(L, -1);
    lua_getfield(L, req, "body_size");
    size = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : -1;
    lua_pop(L, 1);
    if (path == NULL || lua_type(L, -1) != LUA_TSTRING) {
        lua_pop(L, 1);
        lua_pushliteral(L, "an upload needs request.body_file (the file to send)");
        return fail(L, "argument");
    }
    if (!(size >= 0 && size < CTC_EXACT_DOUBLE_MAX) || size != (lua_Number)(int64_t)size) {
        lua_pop(L, 1);
        lua_pushliteral(L, "an upload needs request.body_size (whole bytes, 0 or more)");
        return fail(L, "argument");
    }
    fd = ctc_open_retry(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size < (uint64_t)size) {
        const char *why = fd < 0 ? strerror(errno) : "not a regular file of body_size bytes or more";
        if (fd >= 0)
            close(fd);
        lua_pushfstring(L, "could not read the file to upload, %s: %s", path, why);
        lua_remove(L, -2); /* the path's string */
        return fail(L, "io");
    }
    lua_pop(L, 1);
    x->up_fd = fd;
    x->up_size = (uint64_t)size;
    x->up_sent = 0;
    x->up_errno = 0;
#if CTC_CURL_GE(7, 80, 0)
    /* the handle's own read callback (before 7.80) hands uploads to ctc_upload_read itself */
    curl_easy_setopt(x->easy, CURLOPT_READFUNCTION, ctc_upload_read);
    curl_easy_setopt(x->easy, CURLOPT_READDATA, x);
    curl_easy_setopt(x->easy, CURLOPT_SEEKFUNCTION, on_upload_seek);
    curl_easy_setopt(x->easy, CURLOPT_SEEKDATA, x);
#else
    (void)on_upload_seek;
#endif
    curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(x->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    return 0;
}

int ctc_upload_rewind(ctc_easy *x)
{
    if (x->up_fd < 0)
        return 0;
    if (lseek(x->up_fd, 0, SEEK_SET) != 0)
        return -1;
    x->up_sent = 0;
    x->up_errno = 0;
    return 0;
}

void ctc_upload_close(ctc_easy *x)
{
    if (x->up_fd < 0)
        return;
    close(x->up_fd);
    x->up_fd = -1;
    /* libcurl keeps the upload flag: the handle's next POST would go out as a PUT */
    if (x->easy != NULL)
        curl_easy_setopt(x->easy, CURLOPT_UPLOAD, 0L);
}

int ctc_upload_finish(lua_State *L, ctc_easy *x, CURLcode rc)
{
    int up_errno = x->up_errno;
    ctc_upload_close(x);
    if (up_errno != 0) {
        ctc_push_fail(L, "io", x->up_sent > 0, "could not read the file to upload: %s",
                      up_errno > 0 ? strerror(up_errno) : "it ended before body_size bytes (changed while sent)");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "retryable");
        return 2;
    }
    return ctc_easy_push_result(L, x, rc);
}
