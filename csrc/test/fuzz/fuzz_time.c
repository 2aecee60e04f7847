/*
 * libFuzzer harness for ctc_time_parse and ctc_time_format (csrc/timefmt.c), the
 * provider's "yyyy-MM-dd HH:mm:ss" in UTC+8.
 * Every input is parsed as a time: a success has the exact length, lies in
 * [-28800, CTC_TIME_MAX_EPOCH], and (from 0 up) formats back to the same bytes and parses
 * back to the same value; a failure says why. The first 8 bytes are also read as an int64
 * (big-endian; when a 9th byte is odd, folded into the valid range) and formatted: a
 * success must fit the buffer exactly and parse back; a failure must be out of range.
 */
#include "fuzz.h"
#include "../../parsers.h"

static void check_parse(const char *s, size_t len)
{
    int64_t e = 0, e2 = 0;
    ctc_time_why why = { 0, 0, 0 };
    char out[CTC_TIME_LEN + 8];

    if (ctc_time_parse(s, len, &e, &why) != 0) {
        REQUIRE(why.reason > 0 && why.reason < CTC_TIME_REASONS);
        REQUIRE(why.reason != CTC_TIME_SHAPE || (why.at < CTC_TIME_LEN && why.byte == (unsigned char)s[why.at]));
        return;
    }
    REQUIRE(len == CTC_TIME_LEN);
    REQUIRE(e >= -8 * 3600 && e <= CTC_TIME_MAX_EPOCH);
    if (e < 0) {
        /* before 1970-01-01 00:00 UTC: the formatter refuses it, by its documented range */
        REQUIRE(ctc_time_format(e, out, sizeof out, &why) == -1 && why.reason == CTC_TIME_RANGE);
        return;
    }
    REQUIRE(ctc_time_format(e, out, sizeof out, &why) == 0);
    REQUIRE(strlen(out) == CTC_TIME_LEN && memcmp(out, s, CTC_TIME_LEN) == 0);
    REQUIRE(ctc_time_parse(out, CTC_TIME_LEN, &e2, &why) == 0 && e2 == e);
}

static void check_format(const uint8_t *d, size_t len)
{
    uint64_t u = 0;
    int64_t e, e2 = 0;
    char out[CTC_TIME_LEN + 1 + 4];
    ctc_time_why why = { 0, 0, 0 };
    size_t i;

    for (i = 0; i < 8 && i < len; i++)
        u = (u << 8) | d[i];
    e = (len > 8 && (d[8] & 1)) ? (int64_t)(u % (uint64_t)(CTC_TIME_MAX_EPOCH + 1)) : (int64_t)u;
    memset(out, 'Z', sizeof out);
    if (ctc_time_format(e, out, CTC_TIME_LEN + 1, &why) != 0) {
        REQUIRE(why.reason == CTC_TIME_RANGE && (e < 0 || e > CTC_TIME_MAX_EPOCH));
        REQUIRE(out[CTC_TIME_LEN + 1] == 'Z');
        return;
    }
    REQUIRE(e >= 0 && e <= CTC_TIME_MAX_EPOCH);
    REQUIRE(out[CTC_TIME_LEN] == '\0' && out[CTC_TIME_LEN + 1] == 'Z');
    REQUIRE(ctc_time_parse(out, CTC_TIME_LEN, &e2, &why) == 0 && e2 == e);
    /* a buffer one byte short is an error, never an overrun */
    memset(out, 'Z', sizeof out);
    REQUIRE(ctc_time_format(e, out, CTC_TIME_LEN, &why) == -1);
    REQUIRE(out[CTC_TIME_LEN] == 'Z');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);

    if (buf == NULL)
        return 0;
    check_parse(buf, size);
    check_format((const uint8_t *)buf, size);
    free(buf);
    return 0;
}
