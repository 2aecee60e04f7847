/*
 * File helpers for recording downloads through a transport written in Lua
 * (OpenResty): plain Lua has no stat, fsync or streaming hash. The libcurl
 * transport does the same work in C (curl.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ctc.h"
#include "sha256.h"

#define SHA_MT "clicktocall.sha256"

/* core.file_kind(path) -> "file" | "directory" | "other" | "missing" */
static int l_file_kind(lua_State *L)
{
    struct stat st;
    const char *path = luaL_checkstring(L, 1);
    if (stat(path, &st) != 0)
        lua_pushstring(L, errno == ENOENT ? "missing" : "other");
    else if (S_ISDIR(st.st_mode))
        lua_pushliteral(L, "directory");
    else if (S_ISREG(st.st_mode))
        lua_pushliteral(L, "file");
    else
        lua_pushliteral(L, "other");
    return 1;
}

/* core.fsync(path) -> true | nil, message; works for files and directories */
static int l_fsync(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "could not open %s: %s", path, strerror(errno));
        return 2;
    }
    rc = fsync(fd);
    close(fd);
    if (rc != 0 && errno != EINVAL) { /* some filesystems cannot sync a directory */
        lua_pushnil(L);
        lua_pushfstring(L, "could not sync %s: %s", path, strerror(errno));
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

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
    static const char hex[] = "0123456789abcdef";
    ctc_sha256 copy = *(ctc_sha256 *)luaL_checkudata(L, 1, SHA_MT);
    unsigned char d[32];
    char out[64];
    int i;
    ctc_sha256_final(&copy, d); /* on a copy: hex() can be asked again */
    for (i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    lua_pushlstring(L, out, sizeof out);
    return 1;
}

static const luaL_Reg sha_methods[] = {
    { "update", l_sha_update },
    { "hex", l_sha_hex },
    { NULL, NULL },
};

void ctc_open_files(lua_State *L)
{
    if (luaL_newmetatable(L, SHA_MT)) {
        lua_newtable(L);
        ctc_setfuncs(L, sha_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_file_kind);
    lua_setfield(L, -2, "file_kind");
    lua_pushcfunction(L, l_fsync);
    lua_setfield(L, -2, "fsync");
    lua_pushcfunction(L, l_sha_new);
    lua_setfield(L, -2, "sha256");
}
