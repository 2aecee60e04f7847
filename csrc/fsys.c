/*
 * The file-system helpers the library stands on: one open that retries EINTR, one write-all, the
 * "io" failure they return; and for the jobs (archive, sync) a lock held for one run, the
 * directory listing that finds stale temporary files of ours, a manifest line made durable, and
 * core.fsync_all, the one place the core starts threads.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include "ctc.h"

#define LOCK_MT "clicktocall.file_lock"

int ctc_open_retry(const char *path, int flags, int mode)
{
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

int ctc_write_all(int fd, const void *s, size_t n)
{
    const char *p = s;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

/* nil, { kind = "io", message = "could not <what> <path>: <errno's words>", sent = false [, code] }:
 * code names a condition the caller tells apart ("exists", "busy") */
int ctc_push_io_fail(lua_State *L, const char *what, const char *path, int err, const char *code)
{
    ctc_push_fail(L, "io", 0, "could not %s %s: %s", what, path, strerror(err));
    if (code != NULL) {
        lua_pushstring(L, code);
        lua_setfield(L, -2, "code");
    }
    return 2;
}

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

/* core.file_mode(path) -> its permission bits (st_mode & 07777, a symlink followed) | nil, err */
static int l_file_mode(lua_State *L)
{
    struct stat st;
    const char *path = luaL_checkstring(L, 1);
    if (stat(path, &st) != 0)
        return ctc_push_io_fail(L, "read the mode of", path, errno, errno == ENOENT ? "missing" : NULL);
    lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
    return 1;
}

/* core.fsync(path) -> true | nil, err; works for files and directories */
static int l_fsync(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = ctc_open_retry(path, O_RDONLY, 0), rc, err;
    if (fd < 0)
        return ctc_push_io_fail(L, "open", path, errno, NULL);
    rc = fsync(fd);
    err = rc != 0 ? errno : 0; /* before close can change errno */
    close(fd);
    if (rc != 0 && err != EINVAL) /* some filesystems cannot sync a directory */
        return ctc_push_io_fail(L, "sync", path, err, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.getpid() -> the process id (read at each call: nginx workers are forked) */
static int l_getpid(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)getpid());
    return 1;
}

/*
 * core.getcwd() -> the working directory | nil, err (the jobs make a
 * relative path absolute with it). The buffer is a userdata, so an error
 * while pushing the result cannot leak it; it doubles until the path fits.
 */
static int l_getcwd(lua_State *L)
{
    size_t size = 256;
    for (;;) {
        char *buf = ctc_newuserdata(L, size);
        if (getcwd(buf, size) != NULL) {
            lua_pushstring(L, buf);
            return 1;
        }
        if (errno != ERANGE || size >= ((size_t)1 << 24)) {
            return ctc_push_io_fail(L, "read", "the working directory", errno, NULL);
        }
        lua_pop(L, 1);
        size *= 2;
    }
}

/* A held flock: the descriptor is the lock; closing it releases it (and the kernel does on a crash). */
typedef struct file_lock {
    int fd;
} file_lock;

static void lock_release(file_lock *k)
{
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
}

/*
 * core.lock_file(path) -> lock | nil, err (err.code "busy": another holds it)
 * Creates path if needed (mode 0666 less the umask) and takes an exclusive,
 * non-blocking flock on it. The file itself stays: removing it would let a
 * third run lock a new inode while the second still holds the old one.
 */
static int l_lock_file(lua_State *L)
{
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    file_lock *k;
    int rc;
    if (strlen(path) != n)
        return luaL_argerror(L, 1, "path contains a NUL byte");
    k = ctc_newuserdata(L, sizeof *k);
    k->fd = -1;
    luaL_getmetatable(L, LOCK_MT);
    lua_setmetatable(L, -2);
    k->fd = ctc_open_retry(path, O_RDWR | O_CREAT, 0666);
    if (k->fd < 0)
        return ctc_push_io_fail(L, "open", path, errno, NULL);
    do
        rc = flock(k->fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int err = errno;
        lock_release(k);
        return ctc_push_io_fail(L, "lock", path, err, err == EWOULDBLOCK ? "busy" : NULL);
    }
    return 1;
}

/* lock:unlock() -> true; also __gc and __close; safe more than once */
static int l_lock_unlock(lua_State *L)
{
    lock_release(luaL_checkudata(L, 1, LOCK_MT));
    lua_pushboolean(L, 1);
    return 1;
}

static int l_lock_tostring(lua_State *L)
{
    file_lock *k = luaL_checkudata(L, 1, LOCK_MT);
    lua_pushstring(L, k->fd >= 0 ? "clicktocall.file_lock (held)" : "clicktocall.file_lock (released)");
    return 1;
}

#define DIR_MT "clicktocall.dir"

/* An open directory, owned by a userdata so that a raise (out of memory) mid-listing cannot leak it. */
static int l_dir_gc(lua_State *L)
{
    DIR **d = luaL_checkudata(L, 1, DIR_MT);
    if (*d) {
        closedir(*d);
        *d = NULL;
    }
    return 0;
}

/* core.list_dir(path) -> { name, ... } (without "." and "..") | nil, err */
static int l_list_dir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    DIR **d;
    struct dirent *e;
    lua_Integer i = 0;
    d = ctc_newuserdata(L, sizeof *d);
    *d = NULL;
    if (luaL_newmetatable(L, DIR_MT)) {
        lua_pushcfunction(L, l_dir_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    *d = opendir(path);
    if (!*d)
        return ctc_push_io_fail(L, "open", path, errno, NULL);
    lua_newtable(L);
    while ((e = readdir(*d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        lua_pushstring(L, e->d_name);
        lua_rawseti(L, -2, (int)++i);
    }
    closedir(*d);
    *d = NULL;
    return 1;
}

/* core.pid_alive(pid) -> boolean: whether a process with that id exists (EPERM: it does) */
static int l_pid_alive(lua_State *L)
{
    lua_Number v = luaL_checknumber(L, 1);
    pid_t pid = (pid_t)v;
    if (v < 1 || (lua_Number)pid != v) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, kill(pid, 0) == 0 || errno == EPERM);
    return 1;
}

/* core.dir_writable(path) -> true | nil, err: a directory we may create files in */
static int l_dir_writable(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;
    if (stat(path, &st) != 0)
        return ctc_push_io_fail(L, "use directory", path, errno, NULL);
    if (!S_ISDIR(st.st_mode))
        return ctc_push_io_fail(L, "use directory", path, ENOTDIR, NULL);
    if (access(path, W_OK | X_OK) != 0)
        return ctc_push_io_fail(L, "write in directory", path, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * core.mkdir(path [, mode]) -> true | nil, err (mode 0777 by default, less the umask; an existing
 * directory is fine and keeps its mode). A private directory (the dial guard's claims) passes 0700 (448).
 */
static int l_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer mode = luaL_optinteger(L, 2, 0777);
    luaL_argcheck(L, mode >= 0 && mode <= 07777, 2, "mode must be from 0 to 07777");
    if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST)
        return ctc_push_io_fail(L, "create directory", path, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * core.append_sync(path, s [, mode]) -> true | nil, err
 * Appends s to path (created if missing, with mode, default 0666, less the
 * umask; an existing file keeps its mode) and fsyncs it. On any failure the
 * file is cut back to its old length, so a full disk never leaves a torn
 * line that the next line would be glued to.
 */
static int l_append_sync(lua_State *L)
{
    size_t n;
    const char *path = luaL_checkstring(L, 1);
    const char *s = luaL_checklstring(L, 2, &n);
    lua_Integer mode = luaL_optinteger(L, 3, 0666);
    struct stat st;
    int fd, err;
    luaL_argcheck(L, mode >= 0 && mode <= 0777, 3, "mode must be from 0 to 0777");
    fd = ctc_open_retry(path, O_WRONLY | O_APPEND | O_CREAT, (mode_t)mode);
    if (fd < 0)
        return ctc_push_io_fail(L, "open", path, errno, NULL);
    if (fstat(fd, &st) != 0) {
        err = errno;
        close(fd);
        return ctc_push_io_fail(L, "read the size of", path, err, NULL);
    }
    if (ctc_write_all(fd, s, n) != 0 || fsync(fd) != 0) {
        err = errno;
        if (ftruncate(fd, st.st_size) == 0)
            (void)fsync(fd);
        close(fd);
        return ctc_push_io_fail(L, "write", path, err, NULL);
    }
    if (close(fd) != 0)
        return ctc_push_io_fail(L, "write", path, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * core.fsync_all(paths [, max_threads]) -> errs, failed
 * Makes every path durable as core.fsync(path) would, the fsyncs running at
 * once in up to max_threads threads (default 8, at most 64): a file system
 * with a journal (ext4, xfs) commits concurrent fsyncs together, so a batch
 * of files costs about one fsync's wait instead of one per file. errs[i] is
 * the message for paths[i] ("could not open|sync PATH: <its own errno>"),
 * nil when it is durable; failed counts them. Threads run only open, fsync
 * and close on C copies of the arguments (pointers to the table's strings,
 * which the table keeps alive; no Lua runs meanwhile) and are all joined
 * before anything is pushed. A thread that cannot be started costs only
 * parallelism: the caller's thread does its share.
 */
#define FSYNC_DEFAULT_THREADS 8
#define FSYNC_MAX_THREADS 64
#define FSYNC_STACK (256 * 1024)

typedef struct fsync_job {
    const char *path;
    int err;           /* 0, or the errno of this path's open or fsync */
    int opened;        /* the open succeeded (err is then fsync's) */
} fsync_job;

/* One thread's share: jobs first, first + step, first + 2 * step, ... */
typedef struct fsync_share {
    fsync_job *jobs;
    size_t n, first, step;
    pthread_t tid;
    int started;
} fsync_share;

static void fsync_one(fsync_job *j)
{
    int fd = ctc_open_retry(j->path, O_RDONLY, 0);
    if (fd < 0 && errno == EACCES) {
        /* a file its owner may write but not read (a umask like 0466): any descriptor syncs it */
        fd = ctc_open_retry(j->path, O_WRONLY, 0);
        if (fd < 0)
            errno = EACCES; /* the first answer is the one that says why */
    }
    if (fd < 0) {
        j->err = errno;
        return;
    }
    j->opened = 1;
    /* EINVAL: a file system that cannot sync this kind of file (as core.fsync) */
    j->err = fsync(fd) != 0 && errno != EINVAL ? errno : 0;
    close(fd);
}

static void *fsync_share_run(void *arg)
{
    fsync_share *s = arg;
    size_t i;
    for (i = s->first; i < s->n; i += s->step)
        fsync_one(&s->jobs[i]);
    return NULL;
}

/* Runs shares[1..k) in threads (signals blocked in them: a host's handler
 * runs on its own thread) and shares[0] here, then joins; a share whose
 * thread could not start runs here too. */
static void fsync_shares(fsync_share *shares, size_t k)
{
    pthread_attr_t attr;
    sigset_t all, old;
    size_t t;
    int have_attr = pthread_attr_init(&attr) == 0;
    if (have_attr)
        (void)pthread_attr_setstacksize(&attr, FSYNC_STACK); /* else the default: fine too */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (t = 1; t < k; t++)
        shares[t].started = pthread_create(&shares[t].tid, have_attr ? &attr : NULL, fsync_share_run,
                                           &shares[t]) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (have_attr)
        pthread_attr_destroy(&attr);
    fsync_share_run(&shares[0]);
    for (t = 1; t < k; t++) {
        if (shares[t].started)
            pthread_join(shares[t].tid, NULL);
        else
            fsync_share_run(&shares[t]);
    }
}

static int l_fsync_all(lua_State *L)
{
    size_t n, i, k, failed = 0;
    lua_Integer max;
    fsync_job *jobs;
    fsync_share *shares;
    luaL_checktype(L, 1, LUA_TTABLE);
    max = luaL_optinteger(L, 2, FSYNC_DEFAULT_THREADS);
    luaL_argcheck(L, max >= 1 && max <= FSYNC_MAX_THREADS, 2, "max_threads must be from 1 to 64");
    n = ctc_rawlen(L, 1);
    luaL_argcheck(L, n < INT_MAX && n <= SIZE_MAX / 2 / sizeof *jobs, 1, "too many paths");
    k = n < (size_t)max ? n : (size_t)max;
    /* one block owned by the collector: a raise below (a bad path) leaks nothing */
    jobs = ctc_newuserdata(L, n * sizeof *jobs + k * sizeof *shares + 1);
    shares = (fsync_share *)(void *)(jobs + n);
    for (i = 0; i < n; i++) {
        size_t len;
        const char *path;
        lua_rawgeti(L, 1, (int)(i + 1));
        path = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (path == NULL || strlen(path) != len)
            return luaL_argerror(L, 1, "every path must be a string without NUL bytes");
        lua_pop(L, 1); /* the table keeps the string, and the pointer, alive */
        jobs[i].path = path;
        jobs[i].err = jobs[i].opened = 0;
    }
    for (i = 0; i < k; i++) {
        shares[i].jobs = jobs;
        shares[i].n = n;
        shares[i].first = i;
        shares[i].step = k;
        shares[i].started = 0;
    }
    if (k > 0)
        fsync_shares(shares, k);
    lua_createtable(L, (int)n, 0);
    for (i = 0; i < n; i++) {
        if (jobs[i].err == 0)
            continue;
        lua_pushfstring(L, "could not %s %s: %s", jobs[i].opened ? "sync" : "open", jobs[i].path,
                        strerror(jobs[i].err));
        lua_rawseti(L, -2, (int)(i + 1));
        failed++;
    }
    lua_pushinteger(L, (lua_Integer)failed);
    return 2;
}

static const luaL_Reg lock_methods[] = {
    { "unlock", l_lock_unlock },
    { NULL, NULL },
};

void ctc_open_fsys(lua_State *L)
{
    if (luaL_newmetatable(L, LOCK_MT)) {
        lua_newtable(L);
        ctc_setfuncs(L, lock_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_lock_unlock);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_lock_unlock);
        lua_setfield(L, -2, "__close");
        lua_pushcfunction(L, l_lock_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_lock_file);
    lua_setfield(L, -2, "lock_file");
    lua_pushcfunction(L, l_list_dir);
    lua_setfield(L, -2, "list_dir");
    lua_pushcfunction(L, l_pid_alive);
    lua_setfield(L, -2, "pid_alive");
    lua_pushcfunction(L, l_dir_writable);
    lua_setfield(L, -2, "dir_writable");
    lua_pushcfunction(L, l_mkdir);
    lua_setfield(L, -2, "mkdir");
    lua_pushcfunction(L, l_append_sync);
    lua_setfield(L, -2, "append_sync");
    lua_pushcfunction(L, l_getpid);
    lua_setfield(L, -2, "getpid");
    lua_pushcfunction(L, l_getcwd);
    lua_setfield(L, -2, "getcwd");
    lua_pushcfunction(L, l_file_kind);
    lua_setfield(L, -2, "file_kind");
    lua_pushcfunction(L, l_file_mode);
    lua_setfield(L, -2, "file_mode");
    lua_pushcfunction(L, l_fsync);
    lua_setfield(L, -2, "fsync");
    lua_pushcfunction(L, l_fsync_all);
    lua_setfield(L, -2, "fsync_all");
}
