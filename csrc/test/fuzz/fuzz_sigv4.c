/*
 * libFuzzer harness for the SigV4 canonical request (csrc/sigv4.c) on untrusted parts.
 * Input: lines "method\npath\nquery\nname:value\n..." (a header line without ':' is a name with
 * an empty value). Each part is its own exact heap copy, so a read past any shows. Checks: a
 * refusal says why; the canonical URI holds only unreserved bytes, '/' and %XX (upper-case hex)
 * and decoding it gives the path back; the canonical query is a fixed point and its pairs are
 * sorted; the signed headers list is lower-case tokens, strictly sorted, one per canonical
 * header line; the request's lines are method, URI, query, headers, blank, list, hash; and the
 * whole request signs.
 */
#include "fuzz.h"
#include "../../sigv4.h"

#define MAX_H 32

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static int upper_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

/* only unreserved, %XX and (when slash) '/' */
static void check_encoded(const char *s, size_t n, int slash)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            REQUIRE(i + 2 < n && upper_hex((unsigned char)s[i + 1]) && upper_hex((unsigned char)s[i + 2]));
            i += 2;
        } else {
            REQUIRE(is_unreserved(c) || (slash && c == '/') || (!slash && (c == '=' || c == '&')));
        }
    }
}

static void check_uri(const char *path, size_t n)
{
    ctc_buf uri = { 0 }, back = { 0 };
    REQUIRE(ctc_sigv4_canonical_uri(&uri, path, n, NULL) == 0);
    REQUIRE(uri.len >= 1 && uri.data[0] == '/');
    check_encoded(uri.data, uri.len, 1);
    REQUIRE(ctc_sigv4_uri_decode(&back, uri.data, uri.len) == 0);
    /* the path comes back, with the '/' added in front of one that had none */
    if (n > 0 && path[0] == '/')
        REQUIRE(back.len == n && memcmp(back.data, path, n) == 0);
    else
        REQUIRE(back.len == n + 1 && (n == 0 || memcmp(back.data + 1, path, n) == 0));
    ctc_buf_free(&uri);
    ctc_buf_free(&back);
}

static void check_query(const char *q, size_t n)
{
    ctc_buf a = { 0 }, b = { 0 };
    size_t i, prev = 0, start = 0;
    REQUIRE(ctc_sigv4_canonical_query(&a, q, n, NULL) == 0);
    check_encoded(a.data ? a.data : "", a.len, 0);
    REQUIRE(ctc_sigv4_canonical_query(&b, a.data ? a.data : "", a.len, NULL) == 0);
    REQUIRE(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    /* pairs sorted ('=' sorts below every encoded byte but '%', '-' and '.': compare names first) */
    for (i = 0; i <= a.len; i++) {
        if (i == a.len || a.data[i] == '&') {
            if (start > 0) {
                const char *p1 = a.data + prev, *p2 = a.data + start;
                size_t l1 = start - 1 - prev, l2 = i - start, n1 = 0, n2 = 0, m;
                int c;
                while (n1 < l1 && p1[n1] != '=')
                    n1++;
                while (n2 < l2 && p2[n2] != '=')
                    n2++;
                m = n1 < n2 ? n1 : n2;
                c = memcmp(p1, p2, m);
                REQUIRE(c < 0 || (c == 0 && n1 <= n2));
            }
            prev = start;
            start = i + 1;
        }
    }
    ctc_buf_free(&a);
    ctc_buf_free(&b);
}

static void check_request(const ctc_sigv4_request *r)
{
    ctc_buf creq = { 0 }, list = { 0 }, auth = { 0 };
    const char *why = NULL;
    size_t i, names = 1, lines = 0, at;
    ctc_sigv4_key k = { "us-east-1", "s3", "AKIDEXAMPLE", "secret", 9, 2, 11, 6, "" };

    if (ctc_sigv4_canonical_request(r, &creq, &list, &why) != 0) {
        REQUIRE(why != NULL && why[0] != '\0');
        goto done;
    }
    /* the list: lower-case tokens, strictly rising */
    REQUIRE(list.len > 0 && list.data[0] != ';' && list.data[list.len - 1] != ';');
    for (i = 0; i < list.len; i++) {
        unsigned char c = (unsigned char)list.data[i];
        REQUIRE(!(c >= 'A' && c <= 'Z') && c > 0x20 && c < 0x7f && c != ':');
        if (c == ';') {
            size_t a = i, b;
            names++;
            while (a > 0 && list.data[a - 1] != ';')
                a--;
            for (b = i + 1; b < list.len && list.data[b] != ';'; b++)
                ;
            {
                size_t l1 = i - a, l2 = b - i - 1, m = l1 < l2 ? l1 : l2;
                int c2 = memcmp(list.data + a, list.data + i + 1, m);
                REQUIRE(c2 < 0 || (c2 == 0 && l1 < l2));
            }
        }
    }
    /* method, URI, query, a line per header, blank, list, hash: no other newline */
    for (i = 0; i < creq.len; i++)
        lines += creq.data[i] == '\n';
    REQUIRE(lines == 3 + names + 2);
    at = creq.len - r->payload_hash_len;
    REQUIRE(memcmp(creq.data + at, r->payload_hash, r->payload_hash_len) == 0);
    REQUIRE(memcmp(creq.data + at - 1 - list.len, list.data, list.len) == 0);
    REQUIRE(ctc_sigv4_amz_date(1440938160, k.amz_date, NULL) == 0);
    REQUIRE(ctc_sigv4_authorization(r, &k, &auth, NULL, &why) == 0);
    REQUIRE(auth.len > 64 && memcmp(auth.data, "AWS4-HMAC-SHA256 Credential=", 28) == 0);
done:
    ctc_buf_free(&creq);
    ctc_buf_free(&list);
    ctc_buf_free(&auth);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *part[3 + MAX_H];
    size_t len[3 + MAX_H], np = 0, at = 0, i;
    ctc_sigv4_header h[MAX_H];
    ctc_sigv4_request r;

    while (np < 3 + MAX_H && at <= size) {
        size_t end = at;
        while (end < size && data[end] != '\n')
            end++;
        part[np] = fuzz_copy(data + at, end - at);
        len[np] = end - at;
        if (part[np] == NULL)
            goto done;
        np++;
        at = end + 1;
    }
    while (np < 3) {
        part[np] = fuzz_copy(data, 0);
        len[np] = 0;
        if (part[np] == NULL)
            goto done;
        np++;
    }
    check_uri(part[1], len[1]);
    check_query(part[2], len[2]);
    for (i = 3; i < np; i++) {
        char *colon = memchr(part[i], ':', len[i]);
        ctc_sigv4_header *x = &h[i - 3];
        x->name = part[i];
        x->name_len = colon != NULL ? (size_t)(colon - part[i]) : len[i];
        x->value = colon != NULL ? colon + 1 : part[i] + len[i];
        x->value_len = colon != NULL ? len[i] - x->name_len - 1 : 0;
    }
    r.method = part[0];
    r.method_len = len[0];
    r.path = part[1];
    r.path_len = len[1];
    r.query = part[2];
    r.query_len = len[2];
    r.payload_hash = "UNSIGNED-PAYLOAD";
    r.payload_hash_len = 16;
    r.headers = h;
    r.nheaders = np - 3;
    check_request(&r);
done:
    for (i = 0; i < np; i++)
        free(part[i]);
    return 0;
}
