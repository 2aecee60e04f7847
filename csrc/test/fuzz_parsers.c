/*
 * libFuzzer harness for csrc/parsers.h. The first byte selects the parser, the rest is its
 * input (copied to a buffer of exactly that size, so ASan sees any overread):
 *   0-1  ctc_phone_normalize, default country code "86"; output checked, and idempotent
 *   2    ctc_phone_normalize, default country code taken from the next 1-4 bytes
 *   3    ctc_time_parse; a success must survive format -> parse unchanged
 *   4    ctc_time_format of 8 bytes as an int64; a success must parse back
 *   5    ctc_http_date_parse; a success is in range, of a form's length, and repeatable
 *   6+   ctc_json_scan_page; callback indexes and counts must agree
 * Invariant violations call __builtin_trap() so the fuzzer reports them.
 * Build and run: see csrc/test/README.md.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../parsers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

static void fuzz_phone(const char *s, size_t len, const char *cc, size_t cclen)
{
    char out[CTC_PHONE_MAX + 8];
    char again[CTC_PHONE_MAX];
    const char *why = NULL;
    size_t n, i;

    memset(out, 'Z', sizeof out);
    if (ctc_phone_normalize(s, len, cc, cclen, out, CTC_PHONE_MAX, &why) != 0) {
        REQUIRE(why != NULL && why[0] != '\0');
        REQUIRE(out[CTC_PHONE_MAX] == 'Z');
        return;
    }
    REQUIRE(out[CTC_PHONE_MAX] == 'Z');
    n = strlen(out);
    REQUIRE(n >= 5 && n <= 16 && out[0] == '+' && out[1] != '0');
    for (i = 1; i < n; i++)
        REQUIRE(out[i] >= '0' && out[i] <= '9');
    /* a normalized number is a fixed point, whatever the default country */
    REQUIRE(ctc_phone_normalize(out, n, "86", 2, again, sizeof again, &why) == 0);
    REQUIRE(strcmp(out, again) == 0);
    REQUIRE(ctc_phone_normalize(out, n, "1", 1, again, sizeof again, &why) == 0);
    REQUIRE(strcmp(out, again) == 0);
    /* too small an output buffer is an error, never an overrun */
    memset(again, 'Z', sizeof again);
    REQUIRE(ctc_phone_normalize(s, len, cc, cclen, again, n, &why) == -1);
    REQUIRE(again[n] == 'Z');
}

static void fuzz_time_parse(const char *s, size_t len)
{
    int64_t e = 0, e2 = 0;
    const char *why = NULL;

    if (ctc_time_parse(s, len, &e, &why) != 0) {
        REQUIRE(why != NULL);
        return;
    }
    REQUIRE(len == CTC_TIME_LEN);
    REQUIRE(e >= -8 * 3600 && e <= CTC_TIME_MAX_EPOCH);
    if (e >= 0) {
        char out[32];
        REQUIRE(ctc_time_format(e, out, sizeof out, &why) == 0);
        REQUIRE(memcmp(out, s, CTC_TIME_LEN) == 0);
        REQUIRE(ctc_time_parse(out, strlen(out), &e2, &why) == 0 && e2 == e);
    }
}

static void fuzz_time_format(const uint8_t *d, size_t len)
{
    uint64_t u = 0;
    int64_t e, e2 = 0;
    char out[CTC_TIME_LEN + 1 + 4];
    const char *why = NULL;
    size_t i;

    for (i = 0; i < 8 && i < len; i++)
        u = (u << 8) | d[i];
    /* bias half the inputs into the valid range */
    e = (len > 8 && (d[8] & 1)) ? (int64_t)(u % (uint64_t)(CTC_TIME_MAX_EPOCH + 1)) : (int64_t)u;
    memset(out, 'Z', sizeof out);
    if (ctc_time_format(e, out, CTC_TIME_LEN + 1, &why) != 0) {
        REQUIRE(e < 0 || e > CTC_TIME_MAX_EPOCH);
        return;
    }
    REQUIRE(out[CTC_TIME_LEN] == '\0' && out[CTC_TIME_LEN + 1] == 'Z');
    REQUIRE(ctc_time_parse(out, CTC_TIME_LEN, &e2, &why) == 0 && e2 == e);
}

static void fuzz_http_date(const char *s, size_t len)
{
    int64_t e = -1, e2 = -2;
    const char *why = NULL;

    if (ctc_http_date_parse(s, len, &e, &why) != 0) {
        REQUIRE(why != NULL);
        return;
    }
    /* the three forms have fixed lengths (RFC 850's day name is 6 to 9 letters) */
    REQUIRE(len == 24 || len == 29 || (len >= 30 && len <= 33));
    REQUIRE(e >= 0 && e <= (int64_t)253402300800);
    REQUIRE(ctc_http_date_parse(s, len, &e2, NULL) == 0 && e2 == e);
}

typedef struct {
    size_t n;
    int stop;
} fz_recs;

static int fz_cb(void *ud, size_t index, int kind, int64_t id)
{
    fz_recs *r = ud;
    REQUIRE(index == r->n);
    REQUIRE(kind == CTC_ID_INT || kind == CTC_ID_MISSING || kind == CTC_ID_OTHER);
    REQUIRE(kind == CTC_ID_INT ? id >= 0 : id == 0);
    r->n++;
    return (r->stop > 0 && r->n == (size_t)r->stop) ? 3 : 0;
}

static void fuzz_json(const char *s, size_t len, int stop)
{
    fz_recs r = { 0, 0 };
    size_t count = 12345, off = 12345, count2 = 0;
    const char *why = NULL;
    int rc = ctc_json_scan_page(s, len, fz_cb, &r, &count, &why, &off);

    if (rc == -1) {
        REQUIRE(why != NULL && off <= len && r.n == 0 && count == 0);
        return;
    }
    REQUIRE(rc == 0 || rc == CTC_JSON_NO_DATA_ARRAY);
    REQUIRE(count == r.n);
    if (rc == CTC_JSON_NO_DATA_ARRAY)
        REQUIRE(count == 0);
    /* the same without a callback; and stopping early */
    REQUIRE(ctc_json_scan_page(s, len, NULL, NULL, &count2, NULL, NULL) == rc && count2 == count);
    if (stop > 0 && (size_t)stop <= count) {
        fz_recs r2 = { 0, stop };
        REQUIRE(ctc_json_scan_page(s, len, fz_cb, &r2, &count2, NULL, NULL) == 3);
        REQUIRE(r2.n == (size_t)stop && count2 == (size_t)stop);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t sel;
    char *buf;
    size_t len;

    if (size == 0)
        return 0;
    sel = data[0];
    len = size - 1;
    buf = malloc(len ? len : 1);
    if (buf == NULL)
        return 0;
    if (len)
        memcpy(buf, data + 1, len);
    switch (sel % 8) {
    case 0:
    case 1:
        fuzz_phone(buf, len, "86", 2);
        break;
    case 2: {
        size_t cclen = len ? (size_t)(buf[0] & 3) + 1 : 0;
        if (cclen + 1 > len)
            cclen = len ? len - 1 : 0;
        fuzz_phone(buf + (len ? 1 + cclen : 0), len ? len - 1 - cclen : 0,
                   len ? buf + 1 : "", cclen);
        break;
    }
    case 3:
        fuzz_time_parse(buf, len);
        break;
    case 4:
        fuzz_time_format((const uint8_t *)buf, len);
        break;
    case 5:
        fuzz_http_date(buf, len);
        break;
    default:
        fuzz_json(buf, len, sel >> 3);
        break;
    }
    free(buf);
    return 0;
}
