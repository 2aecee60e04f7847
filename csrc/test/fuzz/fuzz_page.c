/*
 * libFuzzer harness for ctc_json_scan_page (csrc/test/oracle/jsonscan.c), the record page scanner, and
 * the readers without validation beside it.
 * Input: a response body. Checks: a malformed body never reaches the callback, counts 0,
 * and has an error offset inside the body; otherwise the callback sees indexes 0, 1, ... in
 * order with a known kind (an id only with CTC_ID_INT, and never negative), and the count
 * agrees; the result is the same without a callback; a callback that stops at the first,
 * middle or last record stops the scan there with its value; whitespace after a value
 * changes nothing and any other byte after it makes the body malformed. The readers without
 * validation (ctc_json_page_ids, ctc_json_page_last) read any input within its bytes, and
 * agree with the scan on every document it accepts.
 */
#include "fuzz.h"
#include "../oracle/jsonscan.h"

typedef struct {
    size_t n;
    size_t stop; /* 0: never */
} recs;

static int on_record(void *ud, size_t index, int kind, int64_t id)
{
    recs *r = ud;
    REQUIRE(index == r->n);
    REQUIRE(kind == CTC_ID_INT || kind == CTC_ID_MISSING || kind == CTC_ID_OTHER);
    REQUIRE(kind == CTC_ID_INT ? id >= 0 : id == 0);
    r->n++;
    return (r->stop > 0 && r->n == r->stop) ? 3 : 0;
}

static void check_stop(const char *s, size_t len, size_t stop)
{
    recs r = { 0, stop };
    size_t count = 0;
    REQUIRE(ctc_json_scan_page(s, len, on_record, &r, &count, NULL, NULL) == 3);
    REQUIRE(r.n == stop && count == stop);
}

/* s followed by one more byte c, in a buffer of exactly that size */
static int scan_with(const char *s, size_t len, char c, size_t *count)
{
    char *t = malloc(len + 1);
    int rc;
    if (t == NULL)
        return -2;
    memcpy(t, s, len);
    t[len] = c;
    rc = ctc_json_scan_page(t, len + 1, NULL, NULL, count, NULL, NULL);
    free(t);
    return rc;
}

typedef struct {
    size_t n;
    int kinds[128];
    int64_t ids[128];
} seen;

static int keep(void *ud, size_t index, int kind, int64_t id)
{
    seen *r = ud;
    REQUIRE(index == r->n);
    REQUIRE(kind == CTC_ID_INT ? id >= 0 : id == 0);
    if (r->n < 128) {
        r->kinds[r->n] = kind;
        r->ids[r->n] = id;
    }
    r->n++;
    return 0;
}

/* The readers without validation, ctc_json_page_ids (every record) and ctc_json_page_last
 * (the last): any input is read within its bytes; on a document the validating scan accepts
 * (rc 0 or 1, count), their answers are its answers. */
static void check_unvalidated(const char *s, size_t len, int rc, size_t count)
{
    seen a, b;
    size_t n = 0, ln = 0, i;
    int prc, lrc, kind;
    int64_t id;

    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    prc = ctc_json_page_ids(s, len, keep, &a, &n);
    REQUIRE(n == a.n);
    lrc = ctc_json_page_last(s, len, &kind, &id, &ln);
    REQUIRE(lrc == 0 || lrc == CTC_JSON_NO_DATA_ARRAY);
    REQUIRE(kind == CTC_ID_INT ? id >= 0 : id == 0);
    if (rc == -1)
        return;
    REQUIRE(ctc_json_scan_page(s, len, keep, &b, NULL, NULL, NULL) == rc);
    REQUIRE(prc == rc && n == count && lrc == rc && ln == count);
    for (i = 0; i < n && i < 128; i++)
        REQUIRE(a.kinds[i] == b.kinds[i] && a.ids[i] == b.ids[i]);
    if (n > 0 && n <= 128)
        REQUIRE(kind == a.kinds[n - 1] && id == a.ids[n - 1]);
}

static void check_page(const char *s, size_t len)
{
    recs r = { 0, 0 };
    size_t count = 12345, off = 12345, count2 = 0;
    const char *why = NULL;
    int rc = ctc_json_scan_page(s, len, on_record, &r, &count, &why, &off);
    int rc2;

    if (rc == -1) {
        REQUIRE(why != NULL && why[0] != '\0' && off <= len && r.n == 0 && count == 0);
        REQUIRE(ctc_json_scan_page(s, len, NULL, NULL, &count2, NULL, NULL) == -1);
        check_unvalidated(s, len, -1, 0);
        return;
    }
    REQUIRE(rc == 0 || rc == CTC_JSON_NO_DATA_ARRAY);
    REQUIRE(count == r.n);
    if (rc == CTC_JSON_NO_DATA_ARRAY)
        REQUIRE(count == 0);
    REQUIRE(ctc_json_scan_page(s, len, NULL, NULL, &count2, NULL, NULL) == rc && count2 == count);
    check_unvalidated(s, len, rc, count);
    if (count > 0) {
        check_stop(s, len, 1);
        check_stop(s, len, (count + 1) / 2);
        check_stop(s, len, count);
    }
    rc2 = scan_with(s, len, '\n', &count2);
    REQUIRE(rc2 == -2 || (rc2 == rc && count2 == count));
    rc2 = scan_with(s, len, 'x', &count2);
    REQUIRE(rc2 == -2 || rc2 == -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);

    if (buf == NULL)
        return 0;
    check_page(buf, size);
    free(buf);
    return 0;
}
