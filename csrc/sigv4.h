/*
 * AWS Signature Version 4 (and the HMAC-SHA256 under it) as pure functions over bytes, for the
 * upload of recordings to S3-compatible stores. No Lua, no globals that change, never
 * abort(); inputs are (pointer, length). Output grows in ctc_buf (csrc/buf.c): no fixed buffer
 * input can overflow. Every function returning int returns 0, or -1 with *why a static sentence
 * (why may be NULL). The Lua binding is csrc/sigv4_lua.c; csrc/test/ holds the known answers.
 */
#ifndef CTC_SIGV4_H
#define CTC_SIGV4_H
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

/* hidden whatever the build's flags (the rockspec cannot pass -fvisibility) */
#pragma GCC visibility push(hidden)

/* HMAC-SHA256 (RFC 2104 on FIPS 180-4), any key length. */
void ctc_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, unsigned char out[32]);

typedef struct ctc_sigv4_header {
    const char *name, *value;
    size_t name_len, value_len;
} ctc_sigv4_header;

typedef struct ctc_sigv4_request {
    const char *method, *path, *query, *payload_hash;
    size_t method_len, path_len, query_len, payload_hash_len;
    const ctc_sigv4_header *headers;   /* every header to sign, "host" and the x-amz-* ones included */
    size_t nheaders;
} ctc_sigv4_request;

typedef struct ctc_sigv4_key {
    const char *region, *service, *access_key, *secret_key;
    size_t region_len, service_len, access_key_len, secret_key_len;
    char amz_date[17];                  /* "yyyyMMddTHHmmssZ", from ctc_sigv4_amz_date */
} ctc_sigv4_key;

#define CTC_SIGV4_MAX_TIME ((int64_t)253402300799) /* 9999-12-31T23:59:59Z */

/* Unix seconds (0 .. CTC_SIGV4_MAX_TIME) as "yyyyMMddTHHmmssZ" in out[17]. */
int ctc_sigv4_amz_date(int64_t t, char out[17], const char **why);

/* Appends s[0..n) URI-encoded as S3 wants: A-Za-z0-9 - . _ ~ kept, '/' kept when keep_slash,
 * every other byte (space, non-ASCII UTF-8 bytes, '%' too) as %XX in upper-case hex. */
int ctc_sigv4_uri_encode(ctc_buf *out, const char *s, size_t n, int keep_slash);
/* Appends s[0..n) with each %XX (hex either case) decoded; a '%' not followed by two hex digits
 * is kept as it is. */
int ctc_sigv4_uri_decode(ctc_buf *out, const char *s, size_t n);

/* The canonical URI of a path given decoded (an object key's bytes): each segment encoded once,
 * '/' kept, nothing normalized (S3 does not remove "." or "//"); "" is "/". */
int ctc_sigv4_canonical_uri(ctc_buf *out, const char *path, size_t n, const char **why);
/* The canonical query string of a query as sent ("b=2&a=1&flag", no '?'): each name and value
 * decoded, then encoded once ('/' too), sorted by name then value; a name without '=' has an
 * empty value. */
int ctc_sigv4_canonical_query(ctc_buf *out, const char *q, size_t n, const char **why);
/* The canonical headers ("name:value\n" each) and the signed headers list ("a;b;c"): names
 * lower-cased, values trimmed and their runs of spaces and tabs collapsed to one space, sorted by
 * name; a name given twice has its values joined by ','. A name that is not an HTTP token, or a
 * value with a control byte other than tab, is refused. */
int ctc_sigv4_canonical_headers(const ctc_sigv4_header *h, size_t n, ctc_buf *canon, ctc_buf *signed_list,
                                const char **why);
/* The canonical request: method, canonical URI, canonical query, canonical headers, signed
 * headers, payload hash (the body's SHA-256 in hex or "UNSIGNED-PAYLOAD"), joined by '\n'. */
int ctc_sigv4_canonical_request(const ctc_sigv4_request *r, ctc_buf *out, ctc_buf *signed_list,
                                const char **why);
/* The string to sign of a canonical request: "AWS4-HMAC-SHA256", the date, the scope
 * "yyyyMMdd/region/service/aws4_request" and the canonical request's SHA-256 in hex. */
int ctc_sigv4_string_to_sign(const ctc_sigv4_key *k, const char *creq, size_t creq_len, ctc_buf *out,
                             const char **why);
/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" secret, date), region), service), "aws4_request"). */
int ctc_sigv4_signing_key(const ctc_sigv4_key *k, unsigned char out[32], const char **why);
/* Signs r: the Authorization header's value into auth ("AWS4-HMAC-SHA256 Credential=...,
 * SignedHeaders=..., Signature=<64 hex>"); creq (may be NULL) gets the canonical request. */
int ctc_sigv4_authorization(const ctc_sigv4_request *r, const ctc_sigv4_key *k, ctc_buf *auth, ctc_buf *creq,
                            const char **why);
/* sigv4_lua.c: sets core.sigv4_sign and core.s3_url in the table on top */
struct lua_State;
void ctc_open_sigv4(struct lua_State *L);
#pragma GCC visibility pop

#endif
