/*
 * libFuzzer harness for ctc_http_date_parse (csrc/timefmt.c): RFC 9110 IMF-fixdate,
 * RFC 850 and asctime dates. There is no HTTP-date formatter in the core, so this file
 * formats with the C library's gmtime_r, an independent implementation:
 *  - every input is parsed; a success has one of the forms' lengths, lies in
 *    [0, 9999-12-31 23:59:60], and its fields are exactly gmtime_r's of the result
 *    (of the result minus one for a leap second, whose seconds field must read 60);
 *    a failure says why;
 *  - the first 8 bytes, folded into 1970..9999, are formatted by gmtime_r in all three
 *    forms (RFC 850 only for 1970-2069, which its two-digit year can name), and each
 *    must parse back to the same second.
 */
#include <time.h>

#include "fuzz.h"
#include "../../parsers.h"

#define MAX_EPOCH ((int64_t)253402300799) /* 9999-12-31 23:59:59 UTC */

static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
static const char *const days_short[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const days_long[7] = { "Sunday", "Monday", "Tuesday", "Wednesday",
                                          "Thursday", "Friday", "Saturday" };

static void utc(int64_t e, struct tm *tm)
{
    time_t t = (time_t)e;
    REQUIRE(gmtime_r(&t, tm) != NULL);
}

/* the two-digit field at s equals v */
static int is2(const char *s, int v)
{
    return s[0] == '0' + v / 10 && s[1] == '0' + v % 10;
}

/* "HH:MM:SS" at s is tm's clock, with "60" for a leap second */
static int clock_is(const char *s, const struct tm *tm, int leap)
{
    return is2(s, tm->tm_hour) && s[2] == ':' && is2(s + 3, tm->tm_min) && s[5] == ':'
           && (leap ? s[6] == '6' && s[7] == '0' && tm->tm_sec == 59 : is2(s + 6, tm->tm_sec));
}

static int year4_is(const char *s, int y)
{
    return is2(s, y / 100) && is2(s + 2, y % 100);
}

static void check_parse(const char *s, size_t len)
{
    int64_t e = -1, e2 = -2;
    ctc_time_why why = { 0, 0, 0 };
    struct tm tm;
    int leap, year;

    if (ctc_http_date_parse(s, len, &e, &why) != 0) {
        REQUIRE(why.reason > 0 && why.reason < CTC_TIME_REASONS);
        return;
    }
    REQUIRE(ctc_http_date_parse(s, len, &e2, NULL) == 0 && e2 == e);
    REQUIRE(e >= 0 && e <= MAX_EPOCH + 1);
    if (len == 29 && s[3] == ',') {
        /* "Sun, 06 Nov 1994 08:49:37 GMT" */
        leap = s[23] == '6' && s[24] == '0';
        utc(e - leap, &tm);
        year = tm.tm_year + 1900;
        REQUIRE(is2(s + 5, tm.tm_mday) && memcmp(s + 8, months[tm.tm_mon], 3) == 0);
        REQUIRE(year4_is(s + 12, year) && clock_is(s + 17, &tm, leap));
        REQUIRE(memcmp(s + 25, " GMT", 4) == 0);
    } else if (len == 24) {
        /* "Sun Nov  6 08:49:37 1994" (the day may also be "06") */
        leap = s[17] == '6' && s[18] == '0';
        utc(e - leap, &tm);
        year = tm.tm_year + 1900;
        REQUIRE(memcmp(s + 4, months[tm.tm_mon], 3) == 0);
        REQUIRE((s[8] == ' ' || s[8] == '0') ? s[9] == '0' + tm.tm_mday
                                             : is2(s + 8, tm.tm_mday) && tm.tm_mday >= 10);
        REQUIRE(clock_is(s + 11, &tm, leap) && year4_is(s + 20, year));
    } else {
        /* "Sunday, 06-Nov-94 08:49:37 GMT": the comma ends the day name */
        const char *p = memchr(s, ',', len);
        REQUIRE(p != NULL && (size_t)(p - s) >= 6 && (size_t)(p - s) <= 9);
        REQUIRE(len == (size_t)(p - s) + 24);
        leap = p[18] == '6' && p[19] == '0';
        utc(e - leap, &tm);
        year = tm.tm_year + 1900;
        REQUIRE(year >= 1970 && year <= 2069);
        REQUIRE(is2(p + 2, tm.tm_mday) && memcmp(p + 5, months[tm.tm_mon], 3) == 0);
        REQUIRE(is2(p + 9, year % 100) && clock_is(p + 12, &tm, leap));
        REQUIRE(memcmp(p + 20, " GMT", 4) == 0);
    }
}

static void parses_to(const char *s, int64_t e)
{
    int64_t got = -1;
    ctc_time_why why = { 0, 0, 0 };
    size_t n = strlen(s);
    char *copy = fuzz_copy((const uint8_t *)s, n); /* exact size: an overread shows */

    if (copy == NULL)
        return;
    if (ctc_http_date_parse(copy, n, &got, &why) != 0) {
        fprintf(stderr, "fuzz: \"%s\" (%lld) refused: %s\n", s, (long long)e, ctc_time_sentences[why.reason]);
        REQUIRE(0);
    }
    if (got != e) {
        fprintf(stderr, "fuzz: \"%s\" parsed to %lld, not %lld\n", s, (long long)got, (long long)e);
        REQUIRE(0);
    }
    free(copy);
}

static void check_format(const uint8_t *d, size_t len)
{
    uint64_t u = 0;
    int64_t e;
    struct tm tm;
    char s[64];
    int year;
    size_t i;

    for (i = 0; i < 8 && i < len; i++)
        u = (u << 8) | d[i];
    e = (int64_t)(u % (uint64_t)(MAX_EPOCH + 1));
    utc(e, &tm);
    year = tm.tm_year + 1900;
    snprintf(s, sizeof s, "%s, %02d %s %04d %02d:%02d:%02d GMT", days_short[tm.tm_wday],
             tm.tm_mday, months[tm.tm_mon], year, tm.tm_hour, tm.tm_min, tm.tm_sec);
    parses_to(s, e);
    snprintf(s, sizeof s, "%s %s %2d %02d:%02d:%02d %04d", days_short[tm.tm_wday],
             months[tm.tm_mon], tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, year);
    parses_to(s, e);
    if (year <= 2069) {
        snprintf(s, sizeof s, "%s, %02d-%s-%02d %02d:%02d:%02d GMT", days_long[tm.tm_wday],
                 tm.tm_mday, months[tm.tm_mon], year % 100, tm.tm_hour, tm.tm_min, tm.tm_sec);
        parses_to(s, e);
    }
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
