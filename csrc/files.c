/*
 * File helpers for recording downloads through a transport written in Lua
 * (OpenResty, a function): plain Lua has no exclusive create, stat, fsync or
 * streaming hash. The libcurl transport does the same work in C (curl.c).
 * Also the jobs' helpers (below): a lock, a listing, a durable append, and
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
#include "sha256.h"

#define SHA_MT "clicktocall.sha256"
#define SINK_MT "clicktocall.file_sink"
#define LOCK_MT "clicktocall.file_lock"

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

/* nil, { kind = "io", message = "could not <what> <path>: <errno's words>", sent = false [, code] }:
 * code names a condition the caller tells apart ("exists", "busy") */
static int push_fail(lua_State *L, const char *what, const char *path, int err, const char *code)
{
    ctc_push_fail(L, "io", 0, "could not %s %s: %s", what, path, strerror(err));
    if (code != NULL) {
        lua_pushstring(L, code);
        lua_setfield(L, -2, "code");
    }
    return 2;
}

/* core.fsync(path) -> true | nil, err; works for files and directories */
static int l_fsync(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc, err;
    if (fd < 0)
        return push_fail(L, "open", path, errno, NULL);
    rc = fsync(fd);
    err = rc != 0 ? errno : 0; /* before close can change errno */
    close(fd);
    if (rc != 0 && err != EINVAL) /* some filesystems cannot sync a directory */
        return push_fail(L, "sync", path, err, NULL);
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
 * core.file_sink(path) -> sink | nil, err (err.code "exists": the file is there)
 * Creates path exclusively (O_EXCL: never another process's file, never a
 * stale one). Mode 0666 less the umask, as the libcurl download and any other
 * file the process makes: the temporary name is hidden and the final file
 * gets what the caller's umask says, with no racy umask() read.
 */
static int l_file_sink(lua_State *L)
{
    size_t n;
    const char *path = luaL_checklstring(L, 1, &n);
    file_sink *k;
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
    do
        k->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    while (k->fd < 0 && errno == EINTR);
    if (k->fd < 0) {
        int err = errno;
        return push_fail(L, "create", path, err, err == EEXIST ? "exists" : NULL);
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
    size_t n, done = 0;
    const char *s = luaL_checklstring(L, 2, &n);
    if (k->state != SINK_OPEN) {
        return ctc_push_fail(L, "io", 0, "could not write %s: %s", k->path,
                             k->state == SINK_FAILED ? strerror(k->err) : "the file is closed");
    }
    while (done < n) {
        ssize_t w = write(k->fd, s + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            k->err = w < 0 ? errno : EIO;
            k->state = SINK_FAILED;
            return push_fail(L, "write", k->path, k->err, NULL);
        }
        done += (size_t)w;
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
        return push_fail(L, "write", k->path, err, NULL);
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

/* core.getpid() -> the process id (read at each call: nginx workers are forked) */
static int l_getpid(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)getpid());
    return 1;
}


/*
 * The jobs (archive, sync): a lock held for one run, the directory listing
 * that finds stale temporary files of ours, and a manifest line made durable.
 */

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
    do
        k->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    while (k->fd < 0 && errno == EINTR);
    if (k->fd < 0) {
        int err = errno;
        return push_fail(L, "open", path, err, NULL);
    }
    do
        rc = flock(k->fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int err = errno;
        lock_release(k);
        return push_fail(L, "lock", path, err, err == EWOULDBLOCK ? "busy" : NULL);
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
        return push_fail(L, "open", path, errno, NULL);
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
        return push_fail(L, "use directory", path, errno, NULL);
    if (!S_ISDIR(st.st_mode))
        return push_fail(L, "use directory", path, ENOTDIR, NULL);
    if (access(path, W_OK | X_OK) != 0)
        return push_fail(L, "write in directory", path, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

/* core.mkdir(path) -> true | nil, err (mode 0777 less the umask; an existing directory is fine) */
static int l_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return push_fail(L, "create directory", path, errno, NULL);
    lua_pushboolean(L, 1);
    return 1;
}

static int write_all(int fd, const char *s, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, s + done, n - done);
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

/*
 * core.append_sync(path, s) -> true | nil, err
 * Appends s to path (created if missing) and fsyncs it. On any failure the
 * file is cut back to its old length, so a full disk never leaves a torn
 * line that the next line would be glued to.
 */
static int l_append_sync(lua_State *L)
{
    size_t n;
    const char *path = luaL_checkstring(L, 1);
    const char *s = luaL_checklstring(L, 2, &n);
    struct stat st;
    int fd, err;
    do
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return push_fail(L, "open", path, errno, NULL);
    if (fstat(fd, &st) != 0) {
        err = errno;
        close(fd);
        return push_fail(L, "read the size of", path, err, NULL);
    }
    if (write_all(fd, s, n) != 0 || fsync(fd) != 0) {
        err = errno;
        if (ftruncate(fd, st.st_size) == 0)
            (void)fsync(fd);
        close(fd);
        return push_fail(L, "write", path, err, NULL);
    }
    if (close(fd) != 0)
        return push_fail(L, "write", path, errno, NULL);
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

static int open_retry(const char *path, int flags)
{
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    return fd;
}

static void fsync_one(fsync_job *j)
{
    int fd = open_retry(j->path, O_RDONLY);
    if (fd < 0 && errno == EACCES) {
        /* a file its owner may write but not read (a umask like 0466): any descriptor syncs it */
        fd = open_retry(j->path, O_WRONLY);
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

void ctc_open_files(lua_State *L)
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
    lua_pushcfunction(L, l_file_sink);
    lua_setfield(L, -2, "file_sink");
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
    lua_pushcfunction(L, l_file_kind);
    lua_setfield(L, -2, "file_kind");
    lua_pushcfunction(L, l_fsync);
    lua_setfield(L, -2, "fsync");
    lua_pushcfunction(L, l_fsync_all);
    lua_setfield(L, -2, "fsync_all");
    lua_pushcfunction(L, l_sha_new);
    lua_setfield(L, -2, "sha256");
}
