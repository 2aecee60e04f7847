/*
 * bench/raw_curl.c: the floor for any libcurl client. One easy handle (so one
 * keep-alive connection), N sequential POSTs of the same JSON body with the
 * same headers clicktocall sends; the body is collected into a buffer (as any
 * client must) but not parsed. Prints "<calls per second>" on stdout.
 *
 *   raw_curl URL BODY AUTHORIZATION N [readcb]
 *
 * With "readcb" the body goes through a read callback whose seek callback
 * cannot rewind, as clicktocall sent a dial before it used a pre-request
 * callback (and still does with a libcurl older than 7.80): libcurl then writes
 * the headers and the body in two send()s instead of one. Informational.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { char *data; size_t len, cap; } buf;

static size_t on_write(char *p, size_t size, size_t nitems, void *ud)
{
    buf *b = ud;
    size_t n = size * nitems;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return n;
}

typedef struct { const char *p; size_t len, pos; } src;

static size_t on_read(char *dst, size_t size, size_t nitems, void *ud)
{
    src *s = ud;
    size_t n = size * nitems, left = s->len - s->pos;
    if (n > left)
        n = left;
    memcpy(dst, s->p + s->pos, n);
    s->pos += n;
    return n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    (void)ud; (void)offset; (void)origin;
    return CURL_SEEKFUNC_CANTSEEK;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && strcmp(argv[5], "readcb") == 0)) {
        fprintf(stderr, "usage: raw_curl URL BODY AUTHORIZATION N [readcb]\n");
        return 2;
    }
    const char *url = argv[1], *body = argv[2];
    long n = atol(argv[4]);
    int readcb = argc == 6;
    src body_src = { body, strlen(body), 0 };
    char auth[512];
    snprintf(auth, sizeof auth, "Authorization: %s", argv[3]);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *e = curl_easy_init();
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    h = curl_slist_append(h, auth);
    h = curl_slist_append(h, "User-Agent: raw-libcurl");
    buf b = { NULL, 0, 0 };
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    if (readcb) {
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, &body_src);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
    } else {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);

    double t0 = now();
    for (long i = 0; i < n; i++) {
        b.len = 0;
        body_src.pos = 0;
        CURLcode rc = curl_easy_perform(e);
        long status = 0;
        curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
        if (rc != CURLE_OK || status != 200 || b.len == 0) {
            fprintf(stderr, "raw_curl: call %ld failed: %s (HTTP %ld)\n", i, curl_easy_strerror(rc), status);
            return 1;
        }
    }
    double dt = now() - t0;
    printf("%.1f\n", n / dt);
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
    free(b.data);
    curl_global_cleanup();
    return 0;
}
