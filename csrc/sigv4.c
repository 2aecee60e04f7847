/*
 * AWS Signature Version 4 over bytes (see sigv4.h), and HMAC-SHA256 on the core's SHA-256.
 * One signer for every transport: the requests of an upload are signed here, whoever sends them.
 */
#include <stdlib.h>
#include <string.h>
#include "sha256.h"
#include "sigv4.h"

static const char HEX_LOWER[] = "0123456789abcdef";
static const char HEX_UPPER[] = "0123456789ABCDEF";
static const char NOMEM[] = "out of memory";

void ctc_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, unsigned char out[32])
{
    unsigned char k[64], pad[64], inner[32];
    ctc_sha256 c;
    size_t i;

    memset(k, 0, sizeof k);
    if (keylen > sizeof k) { /* a long key is its digest (RFC 2104) */
        ctc_sha256_init(&c);
        ctc_sha256_update(&c, key, keylen);
        ctc_sha256_final(&c, k);
    } else if (keylen > 0) {
        memcpy(k, key, keylen);
    }
    for (i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    ctc_sha256_init(&c);
    ctc_sha256_update(&c, pad, 64);
    ctc_sha256_update(&c, msg, msglen);
    ctc_sha256_final(&c, inner);
    for (i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    ctc_sha256_init(&c);
    ctc_sha256_update(&c, pad, 64);
    ctc_sha256_update(&c, inner, 32);
    ctc_sha256_final(&c, out);
}

static int fail(const char **why, const char *sentence)
{
    if (why != NULL)
        *why = sentence;
    return -1;
}

static int put(ctc_buf *b, const void *p, size_t n, const char **why)
{
    return ctc_buf_append(b, p, n) == 0 ? 0 : fail(why, NOMEM);
}

static int puts_(ctc_buf *b, const char *s, const char **why)
{
    return put(b, s, strlen(s), why);
}

static int put_hex(ctc_buf *b, const unsigned char *d, size_t n, const char **why)
{
    size_t i;
    for (i = 0; i < n; i++) {
        char two[2] = { HEX_LOWER[d[i] >> 4], HEX_LOWER[d[i] & 15] };
        if (put(b, two, 2, why) != 0)
            return -1;
    }
    return 0;
}

/* days since 1970-01-01 to a civil date (proleptic Gregorian) */
static void civil(int64_t days, int *y, int *m, int *d)
{
    int64_t z = days + 719468, era = z / 146097, doe, yoe, doy, mp;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static void digits(char *p, int v, int n)
{
    while (n-- > 0) {
        p[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

int ctc_sigv4_amz_date(int64_t t, char out[17], const char **why)
{
    int y, m, d, s;
    if (t < 0 || t > CTC_SIGV4_MAX_TIME)
        return fail(why, "time must be Unix seconds from 1970 to 9999");
    civil(t / 86400, &y, &m, &d);
    s = (int)(t % 86400);
    digits(out, y, 4);
    digits(out + 4, m, 2);
    digits(out + 6, d, 2);
    out[8] = 'T';
    digits(out + 9, s / 3600, 2);
    digits(out + 11, s / 60 % 60, 2);
    digits(out + 13, s % 60, 2);
    out[15] = 'Z';
    out[16] = '\0';
    return 0;
}

static int unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int ctc_sigv4_uri_encode(ctc_buf *out, const char *s, size_t n, int keep_slash)
{
    size_t i, run = 0;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[3];
        if (unreserved(c) || (keep_slash && c == '/'))
            continue;
        /* the kept bytes before this one in one append */
        if (ctc_buf_append(out, s + run, i - run) != 0)
            return -1;
        esc[0] = '%';
        esc[1] = HEX_UPPER[c >> 4];
        esc[2] = HEX_UPPER[c & 15];
        if (ctc_buf_append(out, esc, 3) != 0)
            return -1;
        run = i + 1;
    }
    return ctc_buf_append(out, s + run, n - run);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ctc_sigv4_uri_decode(ctc_buf *out, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%' && n - i >= 3 && hexval((unsigned char)s[i + 1]) >= 0 && hexval((unsigned char)s[i + 2]) >= 0) {
            c = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        if (ctc_buf_append(out, &c, 1) != 0)
            return -1;
    }
    return 0;
}

int ctc_sigv4_canonical_uri(ctc_buf *out, const char *path, size_t n, const char **why)
{
    if (n == 0 || path[0] != '/')
        if (put(out, "/", 1, why) != 0)
            return -1;
    return ctc_sigv4_uri_encode(out, path, n, 1) == 0 ? 0 : fail(why, NOMEM);
}

/* one query parameter, encoded: name then value, each NUL-free offsets into one buffer */
typedef struct qparam {
    size_t name, name_len, value, value_len;
} qparam;


static int memcmp_len(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c != 0 ? c : (an < bn ? -1 : an > bn);
}

static int qparam_cmp(const char *base, const void *pa, const void *pb)
{
    const qparam *a = pa, *b = pb;
    int c = memcmp_len(base + a->name, a->name_len, base + b->name, b->name_len);
    return c != 0 ? c : memcmp_len(base + a->value, a->value_len, base + b->value, b->value_len);
}

/* A stable merge sort with a context (C99's qsort has none, and a global would make the signer
 * unsafe in threads): n elements of size sz at v, tmp as large. */
static void msort(char *v, char *tmp, size_t n, size_t sz, const char *base,
                  int (*cmp)(const char *, const void *, const void *))
{
    size_t h = n / 2, i = 0, j = h, k = 0;
    if (n < 2)
        return;
    msort(v, tmp, h, sz, base, cmp);
    msort(v + h * sz, tmp, n - h, sz, base, cmp);
    while (i < h && j < n) {
        size_t from = cmp(base, v + j * sz, v + i * sz) < 0 ? j++ : i++;
        memcpy(tmp + k++ * sz, v + from * sz, sz);
    }
    while (i < h)
        memcpy(tmp + k++ * sz, v + i++ * sz, sz);
    while (j < n)
        memcpy(tmp + k++ * sz, v + j++ * sz, sz);
    memcpy(v, tmp, n * sz);
}

/* appends s[0..n) decoded then encoded once (with '/') to enc */
static int reencode(ctc_buf *enc, ctc_buf *tmp, const char *s, size_t n)
{
    ctc_buf_reset(tmp);
    if (ctc_sigv4_uri_decode(tmp, s, n) != 0)
        return -1;
    return ctc_sigv4_uri_encode(enc, tmp->data ? tmp->data : "", tmp->len, 0);
}

int ctc_sigv4_canonical_query(ctc_buf *out, const char *q, size_t n, const char **why)
{
    ctc_buf enc = { 0 }, tmp = { 0 }, list = { 0 };
    qparam *p;
    size_t i = 0, count, k;
    int rc = -1;

    while (i < n) {
        size_t end = i, eq;
        qparam one;
        while (end < n && q[end] != '&')
            end++;
        for (eq = i; eq < end && q[eq] != '='; eq++)
            ;
        if (end > i) {
            one.name = enc.len;
            if (reencode(&enc, &tmp, q + i, eq - i) != 0)
                goto done;
            one.name_len = enc.len - one.name;
            one.value = enc.len;
            if (eq < end && reencode(&enc, &tmp, q + eq + 1, end - eq - 1) != 0)
                goto done;
            one.value_len = enc.len - one.value;
            if (ctc_buf_append(&list, &one, sizeof one) != 0)
                goto done;
        }
        i = end + 1;
    }
    count = list.len / sizeof(qparam);
    p = (qparam *)(void *)list.data;
    if (enc.data == NULL && ctc_buf_append(&enc, "", 1) != 0) /* every name and value empty */
        goto done;
    if (count > 1) {
        qparam *tmpv = malloc(count * sizeof *tmpv);
        if (tmpv == NULL)
            goto done;
        msort((char *)p, (char *)tmpv, count, sizeof *p, enc.data, qparam_cmp);
        free(tmpv);
    }
    for (k = 0; k < count; k++) {
        if ((k > 0 && ctc_buf_append(out, "&", 1) != 0) ||
            ctc_buf_append(out, enc.data + p[k].name, p[k].name_len) != 0 || ctc_buf_append(out, "=", 1) != 0 ||
            ctc_buf_append(out, enc.data + p[k].value, p[k].value_len) != 0)
            goto done;
    }
    rc = 0;
done:
    ctc_buf_free(&enc);
    ctc_buf_free(&tmp);
    ctc_buf_free(&list);
    return rc == 0 ? 0 : fail(why, NOMEM);
}

/* an HTTP token byte (RFC 9110 tchar) */
static int tchar(unsigned char c)
{
    return unreserved(c) || (c != 0 && strchr("!#$%&'*+^`|", c) != NULL);
}

typedef struct hent {
    size_t name, name_len, value, value_len;
} hent;

/* a name given twice keeps its values in the order given (the sort is stable) */
static int hent_cmp(const char *base, const void *pa, const void *pb)
{
    const hent *a = pa, *b = pb;
    return memcmp_len(base + a->name, a->name_len, base + b->name, b->name_len);
}

/* appends the header's name lower-cased and its value trimmed and collapsed to text */
static int header_entry(ctc_buf *text, const ctc_sigv4_header *h, hent *e, const char **why)
{
    size_t i, start, end;
    int space = 0;

    if (h->name_len == 0)
        return fail(why, "a header name is empty");
    e->name = text->len;
    e->name_len = h->name_len;
    for (i = 0; i < h->name_len; i++) {
        unsigned char c = (unsigned char)h->name[i];
        char lc = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        if (!tchar(c))
            return fail(why, "a header name may hold only letters, digits and !#$%&'*+-.^_`|~");
        if (put(text, &lc, 1, why) != 0)
            return -1;
    }
    start = 0;
    end = h->value_len;
    while (start < end && (h->value[start] == ' ' || h->value[start] == '\t'))
        start++;
    while (end > start && (h->value[end - 1] == ' ' || h->value[end - 1] == '\t'))
        end--;
    e->value = text->len;
    for (i = start; i < end; i++) {
        unsigned char c = (unsigned char)h->value[i];
        if (c == ' ' || c == '\t') {
            space = 1;
            continue;
        }
        if (c < 0x20 || c == 0x7f)
            return fail(why, "a header value may not hold control characters (CR, LF, NUL)");
        if ((space && put(text, " ", 1, why) != 0) || put(text, &c, 1, why) != 0)
            return -1;
        space = 0;
    }
    e->value_len = text->len - e->value;
    return 0;
}

int ctc_sigv4_canonical_headers(const ctc_sigv4_header *h, size_t n, ctc_buf *canon, ctc_buf *signed_list,
                                const char **why)
{
    ctc_buf text = { 0 };
    hent *e;
    size_t i;
    int rc = -1;

    if (n == 0)
        return fail(why, "there is no header to sign (host is needed)");
    if (n > (size_t)-1 / 2 / sizeof *e)
        return fail(why, NOMEM);
    e = malloc(2 * n * sizeof *e); /* the second half: the sort's room */
    if (e == NULL)
        return fail(why, NOMEM);
    for (i = 0; i < n; i++)
        if (header_entry(&text, &h[i], &e[i], why) != 0)
            goto done;
    msort((char *)e, (char *)(e + n), n, sizeof *e, text.data, hent_cmp);
    for (i = 0; i < n; i++) {
        int same = i > 0 && memcmp_len(text.data + e[i].name, e[i].name_len, text.data + e[i - 1].name,
                                       e[i - 1].name_len) == 0;
        if (same) {
            if (put(canon, ",", 1, why) != 0)
                goto done;
        } else {
            if ((i > 0 && (put(canon, "\n", 1, why) != 0 || put(signed_list, ";", 1, why) != 0)) ||
                put(canon, text.data + e[i].name, e[i].name_len, why) != 0 || put(canon, ":", 1, why) != 0 ||
                put(signed_list, text.data + e[i].name, e[i].name_len, why) != 0)
                goto done;
        }
        if (put(canon, text.data + e[i].value, e[i].value_len, why) != 0)
            goto done;
    }
    rc = put(canon, "\n", 1, why);
done:
    free(e);
    ctc_buf_free(&text);
    return rc;
}

static int token(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!tchar((unsigned char)s[i]))
            return 0;
    return n > 0;
}

int ctc_sigv4_canonical_request(const ctc_sigv4_request *r, ctc_buf *out, ctc_buf *signed_list,
                                const char **why)
{
    size_t i;
    if (!token(r->method, r->method_len))
        return fail(why, "the method must be an HTTP token (GET, PUT, HEAD, ...)");
    if (r->payload_hash_len == 0)
        return fail(why, "the payload hash is empty (the body's SHA-256 in hex, or UNSIGNED-PAYLOAD)");
    for (i = 0; i < r->payload_hash_len; i++)
        if (!tchar((unsigned char)r->payload_hash[i]))
            return fail(why, "the payload hash must be hex digits or UNSIGNED-PAYLOAD");
    if (put(out, r->method, r->method_len, why) != 0 || put(out, "\n", 1, why) != 0 ||
        ctc_sigv4_canonical_uri(out, r->path, r->path_len, why) != 0 || put(out, "\n", 1, why) != 0 ||
        ctc_sigv4_canonical_query(out, r->query, r->query_len, why) != 0 || put(out, "\n", 1, why) != 0 ||
        ctc_sigv4_canonical_headers(r->headers, r->nheaders, out, signed_list, why) != 0 ||
        put(out, "\n", 1, why) != 0 || put(out, signed_list->data, signed_list->len, why) != 0 ||
        put(out, "\n", 1, why) != 0 || put(out, r->payload_hash, r->payload_hash_len, why) != 0)
        return -1;
    return 0;
}

/* a scope part: a region or service name, never holding '/' or a control byte */
static int scope_part(const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!unreserved((unsigned char)s[i]))
            return 0;
    return n > 0;
}

static int scope(const ctc_sigv4_key *k, ctc_buf *out, const char **why)
{
    if (!scope_part(k->region, k->region_len))
        return fail(why, "region must be letters, digits, '-', '.', '_' or '~'");
    if (!scope_part(k->service, k->service_len))
        return fail(why, "service must be letters, digits, '-', '.', '_' or '~'");
    if (put(out, k->amz_date, 8, why) != 0 || put(out, "/", 1, why) != 0 ||
        put(out, k->region, k->region_len, why) != 0 || put(out, "/", 1, why) != 0 ||
        put(out, k->service, k->service_len, why) != 0 || puts_(out, "/aws4_request", why) != 0)
        return -1;
    return 0;
}

int ctc_sigv4_string_to_sign(const ctc_sigv4_key *k, const char *creq, size_t creq_len, ctc_buf *out,
                             const char **why)
{
    unsigned char d[32];
    ctc_sha256 c;
    ctc_sha256_init(&c);
    ctc_sha256_update(&c, creq, creq_len);
    ctc_sha256_final(&c, d);
    if (puts_(out, "AWS4-HMAC-SHA256\n", why) != 0 || put(out, k->amz_date, 16, why) != 0 ||
        put(out, "\n", 1, why) != 0 || scope(k, out, why) != 0 || put(out, "\n", 1, why) != 0)
        return -1;
    return put_hex(out, d, 32, why);
}

int ctc_sigv4_signing_key(const ctc_sigv4_key *k, unsigned char out[32], const char **why)
{
    ctc_buf secret = { 0 };
    unsigned char a[32], b[32];
    if (!scope_part(k->region, k->region_len))
        return fail(why, "region must be letters, digits, '-', '.', '_' or '~'");
    if (!scope_part(k->service, k->service_len))
        return fail(why, "service must be letters, digits, '-', '.', '_' or '~'");
    if (put(&secret, "AWS4", 4, why) != 0 || put(&secret, k->secret_key, k->secret_key_len, why) != 0) {
        ctc_buf_free(&secret);
        return -1;
    }
    ctc_hmac_sha256(secret.data, secret.len, k->amz_date, 8, a);
    /* the secret leaves no copy behind in freed memory */
    memset(secret.data, 0, secret.len);
    ctc_buf_free(&secret);
    ctc_hmac_sha256(a, 32, k->region, k->region_len, b);
    ctc_hmac_sha256(b, 32, k->service, k->service_len, a);
    ctc_hmac_sha256(a, 32, "aws4_request", 12, out);
    return 0;
}

int ctc_sigv4_authorization(const ctc_sigv4_request *r, const ctc_sigv4_key *k, ctc_buf *auth, ctc_buf *creq,
                            const char **why)
{
    ctc_buf own = { 0 }, list = { 0 }, sts = { 0 };
    ctc_buf *cr = creq != NULL ? creq : &own;
    unsigned char key[32], sig[32];
    int rc = -1;
    size_t i;

    if (k->access_key_len == 0)
        return fail(why, "access_key is empty");
    for (i = 0; i < k->access_key_len; i++)
        if (!unreserved((unsigned char)k->access_key[i]))
            return fail(why, "access_key must be letters and digits");
    if (ctc_sigv4_canonical_request(r, cr, &list, why) != 0 ||
        ctc_sigv4_string_to_sign(k, cr->data, cr->len, &sts, why) != 0 || ctc_sigv4_signing_key(k, key, why) != 0)
        goto done;
    ctc_hmac_sha256(key, 32, sts.data, sts.len, sig);
    if (puts_(auth, "AWS4-HMAC-SHA256 Credential=", why) != 0 ||
        put(auth, k->access_key, k->access_key_len, why) != 0 || put(auth, "/", 1, why) != 0 ||
        scope(k, auth, why) != 0 || puts_(auth, ",SignedHeaders=", why) != 0 ||
        put(auth, list.data, list.len, why) != 0 || puts_(auth, ",Signature=", why) != 0 ||
        put_hex(auth, sig, 32, why) != 0)
        goto done;
    rc = 0;
done:
    memset(key, 0, sizeof key);
    ctc_buf_free(&own);
    ctc_buf_free(&list);
    ctc_buf_free(&sts);
    return rc;
}
