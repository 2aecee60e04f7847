/*
 * Internal declarations shared by the files of the clicktocall core.
 * Everything here has hidden visibility (the Makefile builds with
 * -fvisibility=hidden); luaopen_clicktocall_core is the only exported symbol.
 */
#ifndef CTC_H
#define CTC_H

#include <stddef.h>
#include <stdint.h>
#include "buf.h"
#include "compat.h"

/* hidden whatever the build's flags (the rockspec cannot pass -fvisibility) */
#pragma GCC visibility push(hidden)

/* The one place the version is written: core._VERSION, every module's _VERSION and the User-Agent
 * come from it; spec/config_spec.lua checks the rockspecs and CHANGELOG.md against it. */
#define CTC_VERSION "0.2.0"

/* ---- defaults and limits, in one place (the limits are core.LIMITS; lua/clicktocall/limits.lua is
 * the pure modules' copy, checked against it by spec/core_exports_spec.lua) ---- */
#define CTC_PAGE_SIZE 100                       /* the provider's page size */
#define CTC_DEFAULT_TIMEOUT_MS 10000L
#define CTC_DEFAULT_CONNECT_TIMEOUT_MS 3000L
#define CTC_DEFAULT_MAX_BODY (8L * 1024 * 1024)
#define CTC_MAX_REDIRECTS 3                     /* recording downloads only */
#define CTC_HEADER_BYTES 65536  /* one response's header lines together, status line and line ends not counted */
#define CTC_HEADER_LINES 200    /* ... and their number */

/* ---- the provider's four calls: names declared once (core.c), read by Lua as core.OPS ---- */
enum { CTC_OP_BIND_SEAT, CTC_OP_DIAL, CTC_OP_BALANCE, CTC_OP_RECORDS_PAGE, CTC_OP_COUNT };
extern const char *const ctc_op_names[CTC_OP_COUNT + 1]; /* NULL-terminated, for luaL_checkoption */

/* push.c: the one shape of a failure, and hex */
/* Pushes nil and { kind = kind, message = <fmt as lua_pushfstring>, sent = sent }; returns 2,
 * so a C function ends with `return ctc_push_fail(...)`. The table is on top: more fields
 * (code, retryable, an argument's field) may be set on it before returning. */
int ctc_push_fail(lua_State *L, const char *kind, int sent, const char *fmt, ...);
/* The same with the message the string on top of the stack (it may hold NUL bytes). */
int ctc_push_fail_top(lua_State *L, const char *kind, int sent);
/* Pushes d[0..n) as lower-case hex (n <= 64). */
void ctc_push_hex(lua_State *L, const unsigned char *d, size_t n);

/* base64.c */
size_t ctc_base64_len(size_t n);
void ctc_base64_encode(const unsigned char *in, size_t n, char *out);
int ctc_l_base64(lua_State *L);

/* request.c: builds the four calls' requests; validates every argument */
int ctc_l_request(lua_State *L);
/* A dial's body in out, from the config at cfg and the call's arguments at args, checked as core.request
 * checks them: 0; 1 when they need core.request (a field it refuses, or one only it reads: nothing written,
 * the stack as it was but for values above it); -1 when memory ran out. */
int ctc_dial_body(lua_State *L, int cfg, int args, ctc_buf *out);
int ctc_l_normalize_phone(lua_State *L);
int ctc_l_format_time(lua_State *L);
int ctc_l_parse_time(lua_State *L);

/* cursor.c: ids and sizes between C and Lua */
/* 2^53: a double holds every integer up to it exactly, and not every one past it */
#define CTC_EXACT_DOUBLE_MAX 9007199254740992.0
#define CTC_I64_LEN 24  /* "-9223372036854775808" and its NUL, with room */
/* v in decimal, written at the end of buf[CTC_I64_LEN]; returns where it starts.
 * For messages: lua_pushfstring has no 64-bit format on every Lua version. */
const char *ctc_i64_str(char buf[CTC_I64_LEN], int64_t v);
/* an int64 cursor as Lua sees it: an integer, or (5.1/LuaJIT, past 2^53) a string */
void ctc_push_id(lua_State *L, int64_t id);
/* reads a cursor back; NULL or a static sentence saying what is wrong */
const char *ctc_to_id(lua_State *L, int idx, int64_t *id);

/* response.c: reads a response into a result or an error (kind, message) */
void ctc_open_response(lua_State *L);   /* sets core.response (its own JSON decoder) */
/* An accepted dial's 2xx answer in the provider's usual form: pushes the session id, returns 1;
 * else 0, nothing pushed (core.response reads it then; on what this accepts both agree). */
int ctc_fast_dial(lua_State *L, const char *body, size_t n);

/* curl.c: the libcurl transport */
void ctc_open_curl(lua_State *L);       /* sets core.curl_transport */
/* multi.c: the batch transport over libcurl's multi interface */
void ctc_open_multi(lua_State *L);      /* sets core.curl_multi */

/* sink.c: core.file_sink (a download's file and its SHA-256, for a transport in Lua), core.sha256 */
void ctc_open_sink(lua_State *L);
/* fsys.c: the file-system helpers (lock, listing, mkdir, durable append, fsync_all) */
void ctc_open_fsys(lua_State *L);
/* open(2) with O_CLOEXEC, retried on EINTR: a descriptor, or -1 with errno */
int ctc_open_retry(const char *path, int flags, int mode);
/* all n bytes, short writes looped and EINTR retried: 0, or -1 with errno (EIO for a write of 0) */
int ctc_write_all(int fd, const void *s, size_t n);
/* nil, { kind = "io", message = "could not <what> <path>: <strerror(err)>", sent = false [, code] } */
int ctc_push_io_fail(lua_State *L, const char *what, const char *path, int err, const char *code);

#pragma GCC visibility pop

#endif
