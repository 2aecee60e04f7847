/*
 * The download sink for a transport written in Lua (OpenResty, a function): plain Lua has no
 * exclusive create, fsync or streaming hash. core.file_sink(path) writes a new file and its
 * SHA-256 as the body comes; core.sha256() is the hash alone. The libcurl transport does the
 * same work in C (easy.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "ctc.h"
#include "sha256.h"

#define SHA_MT "clicktocall.sha256"
#define SINK_MT "clicktocall.file_sink"

enum { SINK_OPEN, SINK_FAILED, SINK_FINISHED, SINK_ABORTED };

/* A file being written: owned by its userdata, unlinked unless finished. */
typedef struct file_sink {
    int fd;
    int state;
    int err;           /* errno of the first failed write */
    uint64_t bytes;
    ctc_sha256 sha;
    char path[1];      /* the rest of the userdata holds the path */
} file_sink;

/* core.sha256() -> hasher with :update(s) and :hex() */
static int l_sha_new(lua_State *L)
{
    ctc_sha256 *c = ctc_newuserdata(L, sizeof *c);
    ctc_sha256_init(c);
    luaL_getmetatable(L, SHA_MT);
    lua_setmetatable(L, -2);
    return 1;
}

static int l_sha_update(lua_State *L)
{
    ctc_sha256 *c = luaL_checkudata(L, 1, SHA_MT);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    ctc_sha256_update(c, s, n);
    lua_settop(L, 1);
    return 1;
}

static int l_sha_hex(lua_State *L)
{
    ctc_sha256 copy = *(ctc_sha256 *)luaL_checkudata(L, 1, SHA_MT);
    unsigned char d[32];
    ctc_sha256_final(&copy, d); /* on a copy: hex() can be asked again */
    ctc_push_hex(L, d, sizeof d);
    return 1;
}

/* Closes and unlinks an unfinished file; safe to call more than once. */
static void sink_discard(file_sink *k)
{
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
    if (k->state == SINK_OPEN || k->state == SINK_FAILED)
        unlink(k->path);
    if (k->state != SINK_FINISHED)
        k->state = SINK_ABORTED;
}

/*
 * core.file_sink(path [, mode]) -> sink | nil, err (err.code "exists": the file is there)
 * Creates path exclusively (O_EXCL: never another process's file, never a
 * stale one). Mode (default 0666) less the umask, as the libcurl download and
 * any other file the process makes; given at open(), so the file never exists
 * with a wider mode, and the umask can only narrow it, never widen it.
 */
static int l_file_sink(lua_State *L)
{
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    lua_Integer mode = luaL_optinteger(L, 2, 0666);
    file_sink *k;
    luaL_argcheck(L, mode >= 0 && mode <= 0777, 2, "mode must be from 0 to 0777");
    if (strlen(path) != n)
        return luaL_argerror(L, 1, "path contains a NUL byte");
    k = ctc_newuserdata(L, sizeof *k + n);
    k->fd = -1;
    k->state = SINK_ABORTED; /* nothing to unlink until the file exists */
    k->err = 0;
    k->bytes = 0;
    memcpy(k->path, path, n + 1);
    ctc_sha256_init(&k->sha);
    luaL_getmetatable(L, SINK_MT);
    lua_setmetatable(L, -2);
    k->fd = ctc_open_retry(path, O_WRONLY | O_CREAT | O_EXCL, (mode_t)mode);
    if (k->fd < 0) {
        int err = errno;
        return ctc_push_io_fail(L, "create", path, err, err == EEXIST ? "exists" : NULL);
    }
    k->state = SINK_OPEN;
    return 1;
}

static file_sink *check_sink(lua_State *L)
{
    return luaL_checkudata(L, 1, SINK_MT);
}

/* sink:write(s) -> true | nil, err; short writes are looped, EINTR retried */
static int l_sink_write(lua_State *L)
{
    file_sink *k = check_sink(L);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    if (k->state != SINK_OPEN) {
        return ctc_push_fail(L, "io", 0, "could not write %s: %s", k->path,
                             k->state == SINK_FAILED ? strerror(k->err) : "the file is closed");
    }
    if (ctc_write_all(k->fd, s, n) != 0) {
        k->err = errno;
        k->state = SINK_FAILED;
        return ctc_push_io_fail(L, "write", k->path, k->err, NULL);
    }
    ctc_sha256_update(&k->sha, s, n);
    k->bytes += n;
    lua_pushboolean(L, 1);
    return 1;
}

/* sink:finish() -> bytes, sha256hex | nil, err (fsync and close; on failure the file is removed) */
static int l_sink_finish(lua_State *L)
{
    file_sink *k = check_sink(L);
    unsigned char digest[32];
    int rc, err;
    if (k->state != SINK_OPEN) {
        ctc_push_fail(L, "io", 0, "could not finish %s: %s", k->path,
                      k->state == SINK_FAILED ? strerror(k->err) : "the file is closed");
        sink_discard(k);
        return 2;
    }
    rc = fsync(k->fd);
    err = errno;
    if (close(k->fd) != 0 && rc == 0) {
        rc = -1;
        err = errno;
    }
    k->fd = -1;
    if (rc != 0) {
        sink_discard(k);
        return ctc_push_io_fail(L, "write", k->path, err, NULL);
    }
    k->state = SINK_FINISHED;
    lua_pushnumber(L, (lua_Number)k->bytes);
    ctc_sha256_final(&k->sha, digest);
    ctc_push_hex(L, digest, sizeof digest);
    return 2;
}

/* sink:abort() -> true: closes and removes an unfinished file; also __gc and __close */
static int l_sink_abort(lua_State *L)
{
    sink_discard(check_sink(L));
    lua_pushboolean(L, 1);
    return 1;
}

/* sink:bytes() -> bytes written so far */
static int l_sink_bytes(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)check_sink(L)->bytes);
    return 1;
}

static int l_sink_tostring(lua_State *L)
{
    file_sink *k = check_sink(L);
    static const char *const names[] = { "open", "failed", "finished", "aborted" };
    lua_pushfstring(L, "clicktocall.file_sink (%s)", names[k->state]);
    return 1;
}

static const luaL_Reg sink_methods[] = {
    { "write", l_sink_write },
    { "finish", l_sink_finish },
    { "abort", l_sink_abort },
    { "bytes", l_sink_bytes },
    { NULL, NULL },
};

static const luaL_Reg sha_methods[] = {
    { "update", l_sha_update },
    { "hex", l_sha_hex },
    { NULL, NULL },
};

void ctc_open_sink(lua_State *L)
{
    if (luaL_newmetatable(L, SHA_MT)) {
        lua_newtable(L);
        ctc_setfuncs(L, sha_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, SINK_MT)) {
        lua_newtable(L);
        ctc_setfuncs(L, sink_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_sink_abort);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_sink_abort);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_sink_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_file_sink);
    lua_setfield(L, -2, "file_sink");
    lua_pushcfunction(L, l_sha_new);
    lua_setfield(L, -2, "sha256");
}
