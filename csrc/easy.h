/*
 * ctc_easy: one libcurl easy handle and the C buffers of the request it
 * carries. The single transport (curl.c) owns one; the batch transport
 * (multi.c) owns a pool of them. Preparing a request reads Lua (and may raise
 * on misuse); the callbacks touch only this C memory; results are pushed to
 * Lua after libcurl returns, in exactly one shape for both owners.
 */
#ifndef CTC_EASY_H
#define CTC_EASY_H
#include <curl/curl.h>
#include "buf.h"
#include "ctc.h"
#include "sha256.h"

/* hidden whatever the build's flags (the rockspec cannot pass -fvisibility) */
#pragma GCC visibility push(hidden)

#define CTC_CURL_GE(a, b, c) (LIBCURL_VERSION_NUM >= ((a) << 16 | (b) << 8 | (c)))

typedef struct ctc_easy {
    CURL *easy;
    struct curl_slist *headers;
    ctc_buf hdr_key;       /* "name: value\n" lines x->headers was built from */
    ctc_buf hdr_next;      /* the same for the request being prepared */
    /* the table x->headers was made from, when the owner anchors it (hdr_anchor): it stays in
     * the registry under x until the next one or ctc_easy_unanchor, so no other table can take
     * its address, and a request with that same table keeps the list without reading it (the
     * library never changes a headers table it has handed to a transport) */
    int hdr_anchor;
    const void *hdr_table;
    ctc_buf url;
    /* the per-request options last given to libcurl (valid once opts_set): a
     * handle's requests mostly repeat them, and each setopt of a URL copies it */
    int opts_set;
    long set_timeout, set_connect_timeout;
    curl_off_t set_maxfile;
    long set_follow;
    ctc_buf req_body;
    ctc_buf path;          /* a download's temporary file (removed unless whole) */
    int resend_safe;       /* the request may go again on a fresh connection */
    int want_headers;      /* a 2xx answer's headers are read */
    size_t req_pos;        /* body bytes the read callback handed out (before 7.80) */
    int prereq_calls;      /* pre-request callbacks within this transfer */
    int resend_refused;    /* a second send of a not-resend-safe request was stopped */
    ctc_buf head;          /* raw header lines of the last response */
    int head_done;         /* the blank line after a final response's headers came */
    int head_too_large;    /* the headers passed the limit: the transfer was stopped */
    int head_lines;        /* this response's header lines so far, and their bytes without line ends */
    size_t head_bytes;
    curl_socket_t last_sock; /* the kept-alive connection after the last transfer */
    ctc_buf body;          /* response body (empty for a download) */
    curl_off_t max_body;   /* < 0: no limit */
    int too_large;
    int fd;                /* download target, or -1 */
    int sync;              /* fsync the download's file when it is whole (request.sync ~= false) */
    int mode;              /* the download file's mode at open() (request.mode, default 0666) */
    int write_failed;      /* errno of a failed write(2), or 0 */
    uint64_t bytes;        /* bytes written to fd */
    int up_fd;             /* an upload's source file (request.body_file), or -1: see upload.c */
    uint64_t up_size;      /* the bytes to send from it (request.body_size) */
    uint64_t up_sent;      /* the bytes handed to libcurl so far */
    int up_errno;          /* a read(2) that failed, -1: the file ended before up_size; 0: none */
    ctc_sha256 sha;
    /* the batch transport's own: a check before each send (see multi.c) */
    int (*before_send)(struct ctc_easy *x, const char *local_ip, int local_port,
                       const char *peer_ip, int peer_port);
    void *owner;
    char errbuf[CURL_ERROR_SIZE];
} ctc_easy;

/* What a transfer does with its handle (ctc_easy_prepare's mode) */
#define CTC_EASY_SEND 0
#define CTC_EASY_DOWNLOAD 1
#define CTC_EASY_UPLOAD 2

/* What every easy handle of one transport is made with (copies owned by it). */
typedef struct ctc_curl_opts {
    int insecure;
    char *ca_file;
    char *proxy;
} ctc_curl_opts;

/* Reads ca_file, proxy, insecure from the table at opts (or none); 0 or -1 (no memory). */
int ctc_curl_opts_read(lua_State *L, int opts, ctc_curl_opts *o);
void ctc_curl_opts_free(ctc_curl_opts *o);

/* A zeroed ctc_easy, ready for ctc_easy_open. */
void ctc_easy_clear(ctc_easy *x);
/* Makes the easy handle with the options that never change; tells the collector
 * what it costs. CURLE_OK, or a code (then x->easy is NULL). */
CURLcode ctc_easy_open(lua_State *L, ctc_easy *x, const ctc_curl_opts *o);
/* Frees the handle and buffers; closes (never removes) an open download file. */
void ctc_easy_release(ctc_easy *x);
/* Drops the headers table anchored for x (see hdr_table). */
void ctc_easy_unanchor(lua_State *L, ctc_easy *x);
/* Copies the request table at req into x and its handle (mode: CTC_EASY_*).
 * Misuse raises; x stays consistent, owned by its owner. */
void ctc_easy_prepare(lua_State *L, ctc_easy *x, int req, int mode);
/* The same for a dial whose body is in x->req_body already (ctc_dial_body): the URL and the headers
 * table at those indexes, the timeout, connect timeout and max_body at limits, limits + 1, limits + 2. */
void ctc_easy_prepare_dial(lua_State *L, ctc_easy *x, int url, int headers, int limits);
/* Forgets what one attempt of the transfer left (nothing was sent: the batch
 * transport stopped it before the request went out) so it can start again;
 * a download's file is emptied. 0, or -1 when the file could not be. */
int ctc_easy_restart(ctc_easy *x);
/* Creates the download file (O_EXCL) at path and starts its checksum.
 * 0, or pushes nil, err (kind argument) and returns 2. */
int ctc_easy_create_file(lua_State *L, ctc_easy *x, const char *path);
/* Closes and removes an unfinished download's file (a transfer abandoned). */
void ctc_easy_abandon_file(ctc_easy *x);
/* Pushes what perform returns for a finished transfer: res, or nil, err. */
int ctc_easy_push_result(lua_State *L, ctc_easy *x, CURLcode rc);
/* Finishes a download (fsync unless the request said sync = false, close,
 * remove unless whole) and pushes what download returns: res, or nil, err. */
int ctc_easy_finish_download(lua_State *L, ctc_easy *x, CURLcode rc);
/* nil, err: an easy handle could not be made; nothing was sent */
int ctc_easy_push_start_error(lua_State *L, CURLcode rc);

/* upload.c: a PUT whose body is streamed from a file (request.body_file, body_size). After
 * ctc_easy_prepare(..., CTC_EASY_UPLOAD): opens the file and gives it to libcurl; 0, or pushes nil,
 * err (kind argument or io, nothing sent) and returns 2. The descriptor is x's until closed. */
int ctc_upload_open(lua_State *L, ctc_easy *x, int req);
/* Back to the file's first byte (the transfer starts again); 0 or -1. */
int ctc_upload_rewind(ctc_easy *x);
/* Closes the file (idempotent; release and abandon call it). */
void ctc_upload_close(ctc_easy *x);
/* Closes the file and pushes what upload returns: res, or nil, err. */
int ctc_upload_finish(lua_State *L, ctc_easy *x, CURLcode rc);
/* The read callback, for the pre-7.80 build whose own read callback hands it uploads. */
size_t ctc_upload_read(char *dst, size_t size, size_t nitems, void *ud);
#pragma GCC visibility pop

#endif
