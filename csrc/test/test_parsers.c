/*
 * Tests for csrc/parsers.h: phone normalization, provider times and the JSON page scanner.
 * A plain C program (no framework): every failed check prints a line, the last line is
 * exactly "N passed, M failed", and the exit status is non-zero on any failure.
 * Build and run: see csrc/test/README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../parsers.h"
#include "oracle/jsonscan.h"

static int passed;
static int failed;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (cond) {                                                                        \
            passed++;                                                                      \
        } else {                                                                           \
            failed++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                    \
            printf(__VA_ARGS__);                                                           \
            printf("\n");                                                                  \
        }                                                                                  \
    } while (0)

/* =======================================================================================
 * Phone numbers
 * ===================================================================================== */

typedef struct {
    const char *in;
    size_t len;          /* 0: strlen(in) */
    const char *cc;      /* NULL: "86" */
    const char *want;    /* NULL: an error is expected */
    const char *why;     /* for errors: a substring of the sentence (NULL: any) */
} phone_case;

static const phone_case phone_cases[] = {
    /* the brief's examples */
    { "+8613500000002", 0, NULL, "+8613500000002", NULL },
    { "0086 135 0000 0002", 0, NULL, "+8613500000002", NULL },
    { "8613500000002", 0, NULL, "+8613500000002", NULL },
    { "0755-28000123", 0, NULL, "+8675528000123", NULL },
    { "+8675528000123", 0, NULL, "+8675528000123", NULL },
    { "13918337711", 0, NULL, "+8613918337711", NULL },
    { "+1 (415) 555-2671", 0, NULL, "+14155552671", NULL },
    { "", 0, NULL, NULL, "empty" },
    { "12345", 0, NULL, NULL, "has 5 digits; a Chinese mobile number has 11" },
    { "1350000000a", 0, NULL, NULL, "contains 'a'" },
    { "135000000021", 0, NULL, NULL, "has 12 digits" },
    { "02345678", 0, NULL, NULL, "7 or 8 digits after the area code" },
    /* mobiles, separators */
    { "13500000002", 0, NULL, "+8613500000002", NULL },
    { "135 0000 0002", 0, NULL, "+8613500000002", NULL },
    { "135-0000-0002", 0, NULL, "+8613500000002", NULL },
    { "135.0000.0002", 0, NULL, "+8613500000002", NULL },
    { "(135) 0000 0002", 0, NULL, "+8613500000002", NULL },
    { "+86 (135) 0000-0002", 0, NULL, "+8613500000002", NULL },
    { "\t135 0000 0002 ", 0, NULL, "+8613500000002", NULL },
    { "(+86) 135 0000 0002", 0, NULL, "+8613500000002", NULL },
    { "+86 199 1234 5678", 0, NULL, "+8619912345678", NULL },
    { "17012345678", 0, NULL, "+8617012345678", NULL },
    { "+86-135-0000-0002", 0, NULL, "+8613500000002", NULL },
    { "86 135 0000 0002", 0, NULL, "+8613500000002", NULL },
    /* landlines: two-digit area codes 010, 02x */
    { "010-62345678", 0, NULL, "+861062345678", NULL },
    { "(010) 6234 5678", 0, NULL, "+861062345678", NULL },
    { "021 5555 6666", 0, NULL, "+862155556666", NULL },
    { "020-8888 9999", 0, NULL, "+862088889999", NULL },
    { "029-8765432", 0, NULL, "+86298765432", NULL },
    { "+86 10 6234 5678", 0, NULL, "+861062345678", NULL },
    { "0086 21 5555 6666", 0, NULL, "+862155556666", NULL },
    { "0086-10-62345678", 0, NULL, "+861062345678", NULL },
    { "861062345678", 0, NULL, "+861062345678", NULL },
    /* three-digit area codes */
    { "0571-87654321", 0, NULL, "+8657187654321", NULL },
    { "0311-8765432", 0, NULL, "+863118765432", NULL },
    { "(0755) 2800-0123", 0, NULL, "+8675528000123", NULL },
    { "0755.2800.0123", 0, NULL, "+8675528000123", NULL },
    { "+86 0755 28000123", 0, NULL, "+8675528000123", NULL },
    { "+86 755 2800 0123", 0, NULL, "+8675528000123", NULL },
    { "86 755 28000123", 0, NULL, "+8675528000123", NULL },
    { "0086 0755 28000123", 0, NULL, "+8675528000123", NULL },
    /* other countries */
    { "+44 20 7946 0958", 0, NULL, "+442079460958", NULL },
    { "0044 20 7946 0958", 0, NULL, "+442079460958", NULL },
    { "+7 495 123-45-67", 0, NULL, "+74951234567", NULL },
    { "+852 2123 4567", 0, NULL, "+85221234567", NULL },
    { "+33 1 23 45 67 89", 0, NULL, "+33123456789", NULL },
    { "+39 06 6982 1234", 0, NULL, "+390669821234", NULL },
    { "4155552671", 0, "1", "+14155552671", NULL },
    { "020 7946 0958", 0, "44", "+442079460958", NULL },
    { "+8613500000002", 0, "1", "+8613500000002", NULL },
    { "13500000002", 0, "+86", "+8613500000002", NULL },
    { "+12345", 0, NULL, "+12345", NULL },
    { "+999 123456789012", 0, NULL, "+999123456789012", NULL },
    /* errors: characters */
    { "   ", 0, NULL, NULL, "empty" },
    { "+", 0, NULL, NULL, "no digits" },
    { "()-.", 0, NULL, NULL, "no digits" },
    { "135 0000\x01 0002", 0, NULL, NULL, "control character" },
    { "\n13500000002", 0, NULL, NULL, "control character" },
    { "1350000\x7f" "0002", 0, NULL, NULL, "control character" },
    { "1350000\0" "0002", 12, NULL, NULL, "NUL byte" },
    { "13500000002\0", 12, NULL, NULL, "NUL byte" },
    { "135\xef\xbc\x90" "0000002", 0, NULL, NULL, "full-width digit" },
    { "135\xc2\xa0" "00000002", 0, NULL, NULL, "non-ASCII" },
    { "135#00000002", 0, NULL, NULL, "contains '#'" },
    { "*13500000002", 0, NULL, NULL, "contains '*'" },
    { "135/0000/0002", 0, NULL, NULL, "contains '/'" },
    { "tel:+8613500000002", 0, NULL, NULL, "contains 't'" },
    { "0755 2800 0123 x", 0, NULL, NULL, "contains 'x'" },
    { "135+00000002", 0, NULL, NULL, "'+' is allowed only at the start" },
    { "++8613500000002", 0, NULL, NULL, "'+' is allowed only at the start" },
    { "\xef\xbc\x8b" "8613500000002", 0, NULL, NULL, "non-ASCII" },
    /* errors: mobiles */
    { "1350000000", 0, NULL, NULL, "has 10 digits" },
    { "1", 0, NULL, NULL, "has 1 digit" },
    { "12000000000", 0, NULL, NULL, "13 to 19" },
    { "11000000000", 0, NULL, NULL, "13 to 19" },
    { "+86 12345", 0, NULL, NULL, "has 5 digits" },
    { "+86 135 0000 00021", 0, NULL, NULL, "has 12 digits" },
    { "+86 120 0000 0000", 0, NULL, NULL, "13 to 19" },
    { "8613500000", 0, NULL, NULL, "starts with 86" },
    { "123456789012345678901", 0, NULL, NULL, "more than 20 digits" },
    /* errors: landlines */
    { "0755-280001", 0, NULL, NULL, "7 or 8 digits" },
    { "0755-280001234", 0, NULL, NULL, "7 or 8 digits" },
    { "0755-08000123", 0, NULL, NULL, "cannot start with 0 or 1" },
    { "010-12345678", 0, NULL, NULL, "cannot start with 0 or 1" },
    { "0155-28000123", 0, NULL, NULL, "area code" },
    { "0", 0, NULL, NULL, "too short" },
    { "010", 0, NULL, NULL, "too short" },
    { "0755", 0, NULL, NULL, "too short" },
    { "75528000123", 0, NULL, NULL, "starts with 0 and its area code" },
    { "62345678", 0, NULL, NULL, "starts with 0 and its area code" },
    { "86 0755 28000123", 0, NULL, NULL, "starts with 86" },
    { "+86 10 1234567", 0, NULL, NULL, "cannot start with 0 or 1" },
    { "+86 00 755 28000123", 0, NULL, NULL, "area code" },
    { "+86 15 2800 0123", 0, NULL, NULL, "has 10 digits" },
    /* errors: service numbers */
    { "4008001234", 0, NULL, NULL, "service" },
    { "800-820-8820", 0, NULL, NULL, "service" },
    { "0400-1234567", 0, NULL, NULL, "service" },
    { "+86 400 800 1234", 0, NULL, NULL, "service" },
    /* errors: international prefixes */
    { "+86", 0, NULL, NULL, "after the country code 86" },
    { "+86 0", 0, NULL, NULL, "after the country code 86" },
    { "0086", 0, NULL, NULL, "after the country code 86" },
    { "00", 0, NULL, NULL, "after the international prefix" },
    { "+0 123456", 0, NULL, NULL, "cannot start with 0" },
    { "000 8613500000002", 0, NULL, NULL, "cannot start with 0" },
    { "+44 123", 0, NULL, NULL, "too short" },
    { "+4", 0, NULL, NULL, "too short" },
    { "+44 1234 5678 9012 34", 0, NULL, NULL, "too long" },
    { "+1 234 567 890 123 456", 0, NULL, NULL, "too long" },
    { "+1 234 567 890 123 45", 0, NULL, "+123456789012345", NULL },
    /* errors: default country code */
    { "13500000002", 0, "8", NULL, "default country code" },
    { "13500000002", 0, "0", NULL, "default country code" },
    { "13500000002", 0, "", NULL, "default country code" },
    { "13500000002", 0, "8a", NULL, "default country code" },
    { "13500000002", 0, "1234", NULL, "default country code" },
    { "123", 0, "1", NULL, "too short" },
    { "0123", 0, "44", NULL, "too short" },
    { "123456789012345", 0, "44", NULL, "too long" },
};

static void test_phone(void)
{
    size_t i;
    int good = 0, bad = 0;

    for (i = 0; i < sizeof phone_cases / sizeof phone_cases[0]; i++) {
        const phone_case *t = &phone_cases[i];
        const char *cc = t->cc ? t->cc : "86";
        size_t len = t->len ? t->len : strlen(t->in);
        char out[CTC_PHONE_MAX], why[160] = "";
        ctc_phone_why w = { 0, 0 };
        int rc = ctc_phone_normalize(t->in, len, cc, strlen(cc), out, sizeof out, &w);
        if (rc != 0 && w.reason > 0 && w.reason < CTC_PHONE_REASONS)
            snprintf(why, sizeof why, ctc_phone_sentences[w.reason], w.detail);

        if (t->want) {
            good++;
            CHECK(rc == 0 && strcmp(out, t->want) == 0, "phone [%s] cc %s: want %s, got rc %d %s (%s)",
                  t->in, cc, t->want, rc, rc == 0 ? out : "", why);
            if (rc == 0) {
                /* normalizing a normalized number gives it back, whatever the default */
                char again[CTC_PHONE_MAX];
                int rc2 = ctc_phone_normalize(out, strlen(out), "86", 2, again, sizeof again, &w);
                CHECK(rc2 == 0 && strcmp(again, out) == 0, "phone [%s] not idempotent", out);
            }
        } else {
            bad++;
            CHECK(rc == -1 && why[0] != '\0' && (t->why == NULL || strstr(why, t->why) != NULL),
                  "phone [%s] cc %s: want error containing \"%s\", got rc %d %s / why \"%s\"",
                  t->in, cc, t->why ? t->why : "", rc, rc == 0 ? out : "", why);
        }
    }
    printf("phone: %d good and %d bad cases\n", good, bad);

    /* the output buffer is never overrun; too small is an error */
    {
        char buf[32];
        ctc_phone_why why;
        size_t sz;
        for (sz = 0; sz <= 16; sz++) {
            int rc;
            memset(buf, 'Z', sizeof buf);
            rc = ctc_phone_normalize("13500000002", 11, "86", 2, buf, sz, &why);
            CHECK(rc == (sz >= 15 ? 0 : -1), "phone outsz %zu: rc %d", sz, rc);
            CHECK(buf[sz] == 'Z' && buf[sz + 1] == 'Z', "phone outsz %zu: wrote past outsz", sz);
        }
        CHECK(ctc_phone_normalize("13500000002", 11, "86", 2, NULL, 0, &why) == -1, "NULL out");
        CHECK(ctc_phone_normalize("13500000002", 11, "86", 2, buf, sizeof buf, NULL) == 0,
              "NULL why");
        CHECK(ctc_phone_normalize(NULL, 0, "86", 2, buf, sizeof buf, &why) == -1, "NULL s");
        CHECK(ctc_phone_normalize("13500000002", 11, NULL, 0, buf, sizeof buf, &why) == -1,
              "NULL cc");
        /* the input is read only up to len */
        CHECK(ctc_phone_normalize("13500000002xyz", 11, "86", 2, buf, sizeof buf, &why) == 0
              && strcmp(buf, "+8613500000002") == 0, "len bound");
    }
}

/* =======================================================================================
 * Times
 * ===================================================================================== */

typedef struct {
    const char *in;
    size_t len;          /* 0: strlen */
    int ok;
    int64_t epoch;
    const char *why;
} time_case;

static const time_case time_cases[] = {
    { "1970-01-01 08:00:00", 0, 1, 0, NULL },
    { "1970-01-01 00:00:00", 0, 1, -28800, NULL },
    { "1970-01-01 07:59:59", 0, 1, -1, NULL },
    { "2000-02-29 12:00:00", 0, 1, 951796800, NULL },
    { "2024-02-29 23:59:59", 0, 1, 1709222399, NULL },
    { "2100-02-28 00:00:00", 0, 1, 4107427200LL, NULL },
    { "2100-03-01 00:00:00", 0, 1, 4107513600LL, NULL },
    { "2019-03-25 10:23:52", 0, 1, 1553480632, NULL },
    { "2038-01-19 11:14:08", 0, 1, 2147483648LL, NULL },
    { "9999-12-31 23:59:59", 0, 1, 253402271999LL, NULL },
    { "9999-12-31 15:59:59", 0, 1, 253402243199LL, NULL },
    { "2019-03-25 10:23:52trailing", 19, 1, 1553480632, NULL },
    { "2100-02-29 00:00:00", 0, 0, 0, "February 29" },
    { "2023-02-29 00:00:00", 0, 0, 0, "February 29" },
    { "1900-02-29 00:00:00", 0, 0, 0, "year" },
    { "1969-12-31 23:59:59", 0, 0, 0, "year" },
    { "0000-01-01 00:00:00", 0, 0, 0, "year" },
    { "2023-02-30 00:00:00", 0, 0, 0, "day" },
    { "2023-04-31 00:00:00", 0, 0, 0, "day" },
    { "2023-01-32 00:00:00", 0, 0, 0, "day" },
    { "2023-01-00 00:00:00", 0, 0, 0, "day" },
    { "2023-00-10 00:00:00", 0, 0, 0, "month" },
    { "2023-13-10 00:00:00", 0, 0, 0, "month" },
    { "2023-01-01 24:00:00", 0, 0, 0, "hour" },
    { "2023-01-01 23:60:00", 0, 0, 0, "minute" },
    { "2023-01-01 23:59:60", 0, 0, 0, "second" },
    { "2023/01/01 00:00:00", 0, 0, 0, "look like" },
    { "2023-01-01T00:00:00", 0, 0, 0, "look like" },
    { "2023-01-01 00-00-00", 0, 0, 0, "look like" },
    { "2023-01-01  0:00:00", 0, 0, 0, "look like" },
    { "+023-01-01 00:00:00", 0, 0, 0, "look like" },
    { " 2023-01-01 00:00:00", 0, 0, 0, "look like" },
    { "2023-01-01 00:00:0\0", 19, 0, 0, "look like" },
    { "2023-01-01 00:00:00 ", 0, 0, 0, "after" },
    { "2023-01-01 00:00:00Z", 0, 0, 0, "after" },
    { "2023-01-01 00:00:00\0", 20, 0, 0, "after" },
    { "2023-1-01 00:00:00", 0, 0, 0, "too short" },
    { "2023-01-01", 0, 0, 0, "too short" },
    { "", 0, 0, 0, "too short" },
};

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

/* the sentence a time refusal starts with (the binding adds the byte to CTC_TIME_SHAPE's) */
static const char *time_why(const ctc_time_why *w)
{
    return w->reason > 0 && w->reason < CTC_TIME_REASONS ? ctc_time_sentences[w->reason] : NULL;
}

static void test_time(void)
{
    size_t i;
    char out[32];
    ctc_time_why tw;
    int64_t e;
    int bad_rt = 0;
    int bad_gm = 0;

    for (i = 0; i < sizeof time_cases / sizeof time_cases[0]; i++) {
        const time_case *t = &time_cases[i];
        size_t len = t->len ? t->len : strlen(t->in);
        int rc;
        const char *why;
        e = 12345;
        tw.reason = 0;
        rc = ctc_time_parse(t->in, len, &e, &tw);
        why = time_why(&tw);
        if (t->ok)
            CHECK(rc == 0 && e == t->epoch, "time parse [%s]: want %lld, got rc %d %lld (%s)",
                  t->in, (long long)t->epoch, rc, (long long)e, why ? why : "");
        else
            CHECK(rc == -1 && why && strstr(why, t->why), "time parse [%s]: want error \"%s\", got rc %d why \"%s\"",
                  t->in, t->why, rc, why ? why : "(null)");
    }
    /* a shape refusal names the byte that does not fit, and where */
    CHECK(ctc_time_parse("2026/11-30 00:00:00", 19, &e, &tw) == -1 && tw.reason == CTC_TIME_SHAPE
          && tw.at == 4 && tw.byte == '/', "shape: the offending byte");
    CHECK(ctc_time_parse("2026-11-30 00:00\x01:00", 19, &e, &tw) == -1 && tw.at == 16 && tw.byte == 1,
          "shape: a control byte");
    printf("time: %zu parse cases\n", sizeof time_cases / sizeof time_cases[0]);

    /* format */
    CHECK(ctc_time_format(0, out, sizeof out, &tw) == 0 && strcmp(out, "1970-01-01 08:00:00") == 0,
          "format 0: %s", out);
    CHECK(ctc_time_format(CTC_TIME_MAX_EPOCH, out, sizeof out, &tw) == 0
          && strcmp(out, "9999-12-31 23:59:59") == 0, "format max: %s", out);
    CHECK(ctc_time_format(951796800, out, sizeof out, &tw) == 0
          && strcmp(out, "2000-02-29 12:00:00") == 0, "format 2000-02-29: %s", out);
    CHECK(ctc_time_format(4107513599LL, out, sizeof out, &tw) == 0
          && strcmp(out, "2100-02-28 23:59:59") == 0, "format 2100-02-28: %s", out);
    CHECK(ctc_time_format(1709222399, out, sizeof out, &tw) == 0
          && strcmp(out, "2024-02-29 23:59:59") == 0, "format 2024-02-29: %s", out);
    CHECK(ctc_time_format(-1, out, sizeof out, &tw) == -1 && tw.reason == CTC_TIME_RANGE, "format -1");
    CHECK(ctc_time_format(CTC_TIME_MAX_EPOCH + 1, out, sizeof out, &tw) == -1, "format max+1");
    CHECK(ctc_time_format(INT64_MIN, out, sizeof out, &tw) == -1, "format INT64_MIN");
    CHECK(ctc_time_format(INT64_MAX, out, sizeof out, &tw) == -1, "format INT64_MAX");
    memset(out, 'Z', sizeof out);
    CHECK(ctc_time_format(0, out, 19, &tw) == -1 && out[19] == 'Z', "format outsz 19");
    CHECK(ctc_time_format(0, out, 20, NULL) == 0 && out[19] == '\0' && out[20] == 'Z',
          "format outsz 20");
    CHECK(ctc_time_format(0, NULL, 20, &tw) == -1, "format NULL out");
    CHECK(ctc_time_parse("1970-01-01 08:00:00", 19, NULL, NULL) == 0, "parse NULL epoch");

    /* round trips over random epochs, checked against gmtime_r(epoch + 8h) as well */
    for (i = 0; i < 200000; i++) {
        int64_t ep = (int64_t)(rng() % (uint64_t)(CTC_TIME_MAX_EPOCH + 1));
        time_t tt;
        struct tm tm;
        if (i < 1000)
            ep = (int64_t)(rng() % 5000000000ULL);   /* dense near the present too */
        if (ctc_time_format(ep, out, sizeof out, &tw) != 0
            || ctc_time_parse(out, strlen(out), &e, &tw) != 0 || e != ep) {
            if (bad_rt++ < 5)
                printf("round trip %lld -> %s -> %lld\n", (long long)ep, out, (long long)e);
        }
        tt = (time_t)(ep + 8 * 3600);
        if (sizeof(time_t) >= 8 && gmtime_r(&tt, &tm) != NULL) {
            char ref[64];
            snprintf(ref, sizeof ref, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
            if (strcmp(ref, out) != 0 && bad_gm++ < 5)
                printf("format %lld: %s, gmtime says %s\n", (long long)ep, out, ref);
        }
    }
    CHECK(bad_rt == 0, "%d random round trips failed", bad_rt);
    CHECK(bad_gm == 0, "%d random formats disagree with gmtime_r", bad_gm);

    /* every day 1970..9999: parse(format(day)) is the identity, and days are consecutive */
    {
        int64_t day;
        int bad_day = 0;
        char prev[32] = "";
        int ndays = 0;
        for (day = 0; day * 86400 + 16 * 3600 + 1 <= CTC_TIME_MAX_EPOCH; day++) {
            int64_t ep = day * 86400 + 16 * 3600 + 1;   /* local midnight + 1 s */
            ndays++;
            if (ctc_time_format(ep, out, sizeof out, &tw) != 0
                || ctc_time_parse(out, 19, &e, &tw) != 0 || e != ep
                || strcmp(out + 11, "00:00:01") != 0 || strcmp(prev, out) >= 0) {
                if (bad_day++ < 5)
                    printf("day %lld: %s\n", (long long)day, out);
            }
            memcpy(prev, out, sizeof prev);
        }
        CHECK(bad_day == 0, "%d days failed", bad_day);
        CHECK(ndays == 2932896, "%d days from 1970-01-02 to 9999-12-31", ndays);
        CHECK(strcmp(prev, "9999-12-31 00:00:01") == 0, "last day %s", prev);
    }
}

/* =======================================================================================
 * JSON page scanner
 * ===================================================================================== */

#define MAXREC 256

typedef struct {
    size_t n;
    int kind[MAXREC];
    int64_t id[MAXREC];
    size_t index_err;
    int stop_at;         /* return 7 at this index (-1: never) */
} recs;

static int on_rec(void *ud, size_t index, int kind, int64_t id)
{
    recs *r = ud;
    if (index != r->n)
        r->index_err++;
    if (r->n < MAXREC) {
        r->kind[r->n] = kind;
        r->id[r->n] = id;
    }
    r->n++;
    return (r->stop_at >= 0 && (size_t)r->stop_at == index) ? 7 : 0;
}

/* "5 M O 7": records as text */
static void recs_text(const recs *r, char *buf, size_t sz)
{
    size_t i, o = 0;
    buf[0] = '\0';
    for (i = 0; i < r->n && i < MAXREC && o + 24 < sz; i++) {
        if (i)
            buf[o++] = ' ';
        if (r->kind[i] == CTC_ID_INT)
            o += (size_t)snprintf(buf + o, sz - o, "%lld", (long long)r->id[i]);
        else if (r->kind[i] == CTC_ID_MISSING && r->id[i] == 0)
            buf[o++] = 'M';
        else if (r->kind[i] == CTC_ID_OTHER && r->id[i] == 0)
            buf[o++] = 'O';
        else
            buf[o++] = '?';
        buf[o] = '\0';
    }
}

static int scan(const char *doc, size_t len, recs *r, size_t *count, const char **why,
                size_t *off)
{
    memset(r, 0, sizeof *r);
    r->stop_at = -1;
    *count = 999;
    *why = NULL;
    *off = 999999;
    return ctc_json_scan_page(doc, len, on_rec, r, count, why, off);
}

typedef struct {
    const char *doc;
    size_t len;          /* 0: strlen */
    int rc;              /* 0, 1 or -1 */
    const char *want;    /* rc 0: the records as text; rc -1: a substring of why */
    long off;            /* rc -1: expected error offset, or -1 for any */
} json_case;

static const json_case json_cases[] = {
    { "{\"data\":[]}", 0, 0, "", 0 },
    { "{\"meta\":{\"success\":true,\"message\":\"ok\"},\"data\":[{\"id\":5,\"x\":1}]}", 0, 0, "5", 0 },
    { "{\"data\":[{\"id\":\"123\"}]}", 0, 0, "123", 0 },
    { "{\"data\":[{\"x\":1}]}", 0, 0, "M", 0 },
    { "{\"data\":[{}]}", 0, 0, "M", 0 },
    { "{\"data\":[{\"id\":1.5}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":-3}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":-0}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":0}]}", 0, 0, "0", 0 },
    { "{\"data\":[{\"id\":9223372036854775807}]}", 0, 0, "9223372036854775807", 0 },
    { "{\"data\":[{\"id\":9223372036854775808}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":99999999999999999999999}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\"9223372036854775807\"}]}", 0, 0, "9223372036854775807", 0 },
    { "{\"data\":[{\"id\":\"9223372036854775808\"}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\"0000000000000000001\"}]}", 0, 0, "1", 0 },
    { "{\"data\":[{\"id\":\"00000000000000000001\"}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\"\"}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\"12a\"}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\"-12\"}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\" 12\"}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\"1\\u0032\"}]}", 0, 0, "12", 0 },
    { "{\"data\":[{\"id\":true},{\"id\":false},{\"id\":null},{\"id\":{}},{\"id\":[1]}]}", 0, 0, "O O O O O", 0 },
    { "{\"data\":[{\"id\":1e3},{\"id\":1E3},{\"id\":10e-1},{\"id\":1.0}]}", 0, 0, "O O O O", 0 },
    { "{\"data\":[1,\"x\",null,[{\"id\":3}],true]}", 0, 0, "M M M M M", 0 },
    { "{\"data\":[{\"sub\":{\"id\":9},\"list\":[{\"id\":8}],\"id\":7}]}", 0, 0, "7", 0 },
    { "{\"data\":[{\"sub\":{\"id\":9}},{\"l\":[{\"id\":8}]}]}", 0, 0, "M M", 0 },
    { "{\"data\":[{\"id\":1,\"id\":2}]}", 0, 0, "2", 0 },
    { "{\"data\":[{\"id\":1,\"id\":\"x\"}]}", 0, 0, "O", 0 },
    { "{\"data\":[{\"id\":\"x\",\"id\":4}]}", 0, 0, "4", 0 },
    { "{\"data\":[{\"id\":1}],\"data\":[{\"id\":2},{\"id\":3}]}", 0, 0, "2 3", 0 },
    { "{\"data\":[{\"id\":1}],\"data\":null}", 0, 1, NULL, 0 },
    { "{\"data\":{\"id\":1}}", 0, 1, NULL, 0 },
    { "{\"x\":{\"data\":[{\"id\":1}]}}", 0, 1, NULL, 0 },
    { "[{\"data\":[{\"id\":1}]}]", 0, 1, NULL, 0 },
    { "\"data\"", 0, 1, NULL, 0 },
    { "123", 0, 1, NULL, 0 },
    { "null", 0, 1, NULL, 0 },
    { "{}", 0, 1, NULL, 0 },
    { "{\"dat\":[{\"id\":1}]}", 0, 1, NULL, 0 },
    { "{\"datas\":[{\"id\":1}]}", 0, 1, NULL, 0 },
    { "{\"Data\":[{\"id\":1}]}", 0, 1, NULL, 0 },
    { "{\"data\\u0000\":[{\"id\":1}]}", 0, 1, NULL, 0 },
    { "{\"\\u0064ata\":[{\"\\u0069d\":42}]}", 0, 0, "42", 0 },
    { "{\"d\\u0061t\\u0061\":[{\"i\\u0064\":\"4\\u0032\"}]}", 0, 0, "42", 0 },
    { "{\"data\":[{\"i\\u0044\":1,\"ID\":2,\"Id\":3}]}", 0, 0, "M", 0 },
    { "{\"data\":[{\"\\u00e9id\":1}]}", 0, 0, "M", 0 },
    { "{\"data\":[{\"name\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\",\"id\":1}]}", 0, 0, "1", 0 },
    { "{\"data\":[{\"name\":\"\xe5\xbc\xa0\xe4\xb8\x89\",\"id\":2}]}", 0, 0, "2", 0 },
    { " \t\r\n{ \"data\" : [ { \"id\" : 1 } , { \"id\" : 2 } ] } \n", 0, 0, "1 2", 0 },
    { "{\"data\":[{\"a\":\"}]{[,\",\"id\":5},{\"b\":\"\\\"}\",\"id\":6}]}", 0, 0, "5 6", 0 },
    { "{\"data\":[{\"a\":\"\\\\\",\"id\":5}]}", 0, 0, "5", 0 },
    { "{\"data\":[{\"id\":5}  ,  {\"id\" :6 }  ]  }", 0, 0, "5 6", 0 },
    { "{\"data\":[[],{},[[]],{\"id\":[{\"id\":1}]}]}", 0, 0, "M M M O", 0 },
    { "{\"data\":[{\"x\":-1.5e+10,\"y\":0.0,\"z\":-0,\"id\":3}]}", 0, 0, "3", 0 },
    /* malformed */
    { "", 0, -1, "empty", 0 },
    { "   ", 0, -1, "empty", 3 },
    { "{", 0, -1, "end of input", 1 },
    { "{\"data\":[}", 0, -1, "unexpected character", 9 },
    { "{\"data\":[1,]}", 0, -1, "unexpected character", 11 },
    { "{\"a\":1,}", 0, -1, "key must be a string", 7 },
    { "{\"a\" 1}", 0, -1, "expected ':'", 5 },
    { "{a:1}", 0, -1, "key must be a string", 1 },
    { "{\"a\":1 \"b\":2}", 0, -1, "expected ',' or '}'", 7 },
    { "[1 2]", 0, -1, "expected ',' or ']'", 3 },
    { "{\"a\":1]", 0, -1, "expected ',' or '}'", 6 },
    { "[1}", 0, -1, "expected ',' or ']'", 2 },
    { "\"abc", 0, -1, "unterminated string", 0 },
    { "{\"data\":[{\"id\":\"12}]}", 0, -1, "unterminated string", 15 },
    { "\"\\x\"", 0, -1, "invalid escape", 1 },
    { "\"\\u12G4\"", 0, -1, "4 hex digits", 1 },
    { "\"\\u12\"", 0, -1, NULL, -1 },
    { "\"\\ud800\"", 0, -1, "surrogate", 1 },
    { "\"\\udc00\"", 0, -1, "surrogate", 1 },
    { "\"\\ud800\\u0041\"", 0, -1, "surrogate", 1 },
    { "\"\\ud800\\ud800\"", 0, -1, "surrogate", 1 },
    { "\"\\ud800x\"", 0, -1, "surrogate", 1 },
    { "\"a\x01" "b\"", 0, -1, "control character", 2 },
    { "\"a\tb\"", 0, -1, "control character", 2 },
    { "\"a\0b\"", 5, -1, "control character", 2 },
    { "{\"a\":1}\0", 8, -1, "trailing", 7 },
    { "\0{\"a\":1}", 8, -1, "unexpected character", 0 },
    { "01", 0, -1, "trailing", 1 },
    { "-", 0, -1, "number", 0 },
    { "1.", 0, -1, "number", 0 },
    { ".5", 0, -1, "unexpected character", 0 },
    { "1e", 0, -1, "number", 0 },
    { "1e+", 0, -1, "number", 0 },
    { "+1", 0, -1, "unexpected character", 0 },
    { "0x10", 0, -1, "trailing", 1 },
    { "--1", 0, -1, "number", 0 },
    { "1.e5", 0, -1, "number", 0 },
    { "[-]", 0, -1, "number", 1 },
    { "tru", 0, -1, "end of input", 3 },
    { "nul", 0, -1, "end of input", 3 },
    { "True", 0, -1, "unexpected character", 0 },
    { "nulll", 0, -1, "trailing", 4 },
    { "[truex]", 0, -1, "expected ',' or ']'", 5 },
    { "fals", 0, -1, "end of input", 4 },
    { "[nuLl]", 0, -1, "literal", 1 },
    { "{\"a\":1}}", 0, -1, "trailing", 7 },
    { "{\"a\":1} x", 0, -1, "trailing", 8 },
    { "x{}", 0, -1, "unexpected character", 0 },
    { "{}{}", 0, -1, "trailing", 2 },
    { "[]]", 0, -1, "trailing", 2 },
    { "NaN", 0, -1, "unexpected character", 0 },
    { "Infinity", 0, -1, "unexpected character", 0 },
    { "'a'", 0, -1, "unexpected character", 0 },
    { "\xef\xbb\xbf{}", 0, -1, "unexpected character", 0 },
    { "{\"data\":[{\"id\":1}]", 0, -1, "end of input", 18 },
    { "{\"data\":[{\"id\":1},]}", 0, -1, "unexpected character", 18 },
    { "{\"data\":[{\"id\":01}]}", 0, -1, "expected ',' or '}'", 16 },
    { "{\"data\":[{\"id\" 1}]}", 0, -1, "expected ':'", 15 },
    { "{\"data\":[{\"id\":1}]}\n\n}", 0, -1, "trailing", 21 },
    { "{\"a\":\"\\\"}", 0, -1, "unterminated string", 5 },
    { "[1,\n2,,3]", 0, -1, "unexpected character", 6 },
    { "{\"data\":[{\"id\":1}], \"data\":[{\"id\":2}, ]}", 0, -1, "unexpected character", 38 },
};

static void test_json_table(void)
{
    size_t i;
    int ok = 0, bad = 0;

    for (i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        const json_case *t = &json_cases[i];
        size_t len = t->len ? t->len : strlen(t->doc);
        recs r;
        size_t count, off;
        const char *why;
        char text[2048];
        int rc = scan(t->doc, len, &r, &count, &why, &off);

        recs_text(&r, text, sizeof text);
        if (t->rc == 0) {
            ok++;
            CHECK(rc == 0 && strcmp(text, t->want) == 0 && count == r.n && r.index_err == 0,
                  "json [%s]: want 0 \"%s\", got rc %d \"%s\" count %zu (%s)", t->doc, t->want,
                  rc, text, count, rc == -1 ? why : "");
        } else if (t->rc == 1) {
            ok++;
            CHECK(rc == CTC_JSON_NO_DATA_ARRAY && r.n == 0 && count == 0,
                  "json [%s]: want no data array, got rc %d count %zu (%s)", t->doc, rc, count,
                  rc == -1 ? why : "");
        } else {
            bad++;
            CHECK(rc == -1 && r.n == 0 && why != NULL && strncmp(why, "invalid JSON: ", 14) == 0
                  && (t->want == NULL || strstr(why, t->want) != NULL)
                  && (t->off < 0 || off == (size_t)t->off) && off <= len,
                  "json [%s]: want error \"%s\" at %ld, got rc %d \"%s\" at %zu", t->doc,
                  t->want ? t->want : "", t->off, rc, why ? why : "(null)", off);
        }
    }
    printf("json: %d valid and %d malformed table cases\n", ok, bad);
}

static size_t make_page(char *buf, size_t sz, int n);

/* ctc_json_page_ids (no validation) and ctc_json_page_last on a document: for one that
 * ctc_json_scan_page accepts, the same records and count as its scan (rc 0 or 1, the records'
 * text want); the last record and count from page_last as from page_ids' last call. */
static void check_unvalidated(const char *doc, size_t len, int want_rc, const char *want)
{
    recs r;
    size_t count = 999, lcount = 999;
    int rc, lkind, lrc;
    int64_t lid;
    char text[2048];

    memset(&r, 0, sizeof r);
    r.stop_at = -1;
    rc = ctc_json_page_ids(doc, len, on_rec, &r, &count);
    recs_text(&r, text, sizeof text);
    CHECK(rc == want_rc && count == r.n && r.index_err == 0 && (want == NULL || strcmp(text, want) == 0),
          "page_ids [%s]: want %d \"%s\", got rc %d \"%s\" count %zu", doc, want_rc,
          want ? want : "", rc, text, count);
    lrc = ctc_json_page_last(doc, len, &lkind, &lid, &lcount);
    CHECK(lrc == rc && lcount == count
          && (count == 0 ? lkind == CTC_ID_MISSING && lid == 0
                         : (r.n <= MAXREC && lkind == r.kind[r.n - 1] && lid == r.id[r.n - 1])),
          "page_last [%s]: rc %d count %zu kind %d id %lld; page_ids rc %d count %zu", doc, lrc,
          lcount, lkind, (long long)lid, rc, count);
}

/* Documents lua-cjson accepts and pass 1 refuses (or that only a decoder could have checked):
 * the records reader reads their ids with pass 2 alone, by the same rule. */
static const struct {
    const char *doc;
    const char *want;
} lenient_cases[] = {
    { "{\"data\":[{\"id\":5.}]}", "O" },                       /* cjson: strtod takes "5." */
    { "{\"data\":[{\"id\":1.e5},{\"id\":2}]}", "O 2" },
    { "{\"data\":[{\"s\":\"a\tb\",\"id\":5}]}", "5" },           /* a raw control character */
    { "{\"data\":[{\"s\":\"a\nb\\\"\",\"id\":6}]}", "6" },
    { "{\"data\":[{\"id\":5},{\"id\":-0},{\"id\":1e400}]}", "5 O O" },
    /* 70 levels inside a record (pass 1 refuses past 64; the reader has cjson refuse it) */
    { "{\"data\":[{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
      "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
      "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],\"id\":7}]}", "7" },
};

static void test_json_unvalidated(void)
{
    size_t i;

    for (i = 0; i < sizeof json_cases / sizeof json_cases[0]; i++) {
        const json_case *t = &json_cases[i];
        if (t->rc != -1)
            check_unvalidated(t->doc, t->len ? t->len : strlen(t->doc), t->rc, t->rc == 0 ? t->want : NULL);
    }
    for (i = 0; i < sizeof lenient_cases / sizeof lenient_cases[0]; i++)
        check_unvalidated(lenient_cases[i].doc, strlen(lenient_cases[i].doc), 0, lenient_cases[i].want);
    /* a callback's stop: its value, and the count includes that record */
    {
        recs r;
        size_t count = 0;
        const char *doc = "{\"data\":[{\"id\":1},{\"id\":2},{\"id\":3}]}";
        memset(&r, 0, sizeof r);
        r.stop_at = 1;
        CHECK(ctc_json_page_ids(doc, strlen(doc), on_rec, &r, &count) == 7 && count == 2 && r.n == 2,
              "page_ids stop: count %zu n %zu", count, r.n);
    }
    /* every prefix of a page: any answer, read within the bytes (ASan checks the reads) */
    {
        static char page[65536];
        size_t len = make_page(page, sizeof page, 100), cut;
        int bad = 0;
        for (cut = 0; cut <= len; cut++) {
            char *p = malloc(cut ? cut : 1);
            recs r;
            size_t count;
            int kind;
            int64_t id;
            if (p == NULL)
                break;
            memcpy(p, page, cut);
            memset(&r, 0, sizeof r);
            r.stop_at = -1;
            if (ctc_json_page_ids(p, cut, on_rec, &r, &count) == 0 && count != r.n)
                bad++;
            (void)ctc_json_page_last(p, cut, &kind, &id, &count);
            free(p);
        }
        CHECK(bad == 0, "page_ids on prefixes: %d counts disagree", bad);
    }
    printf("json: page_ids and page_last on %zu table and %zu lenient cases\n",
           sizeof json_cases / sizeof json_cases[0],
           sizeof lenient_cases / sizeof lenient_cases[0]);
}

/* A page of n records with ids written in several ways; returns its length. */
static size_t make_page(char *buf, size_t sz, int n)
{
    size_t o = 0;
    int i;

    o += (size_t)snprintf(buf + o, sz - o, "{\"meta\":{\"success\":true,\"code\":200,"
                          "\"message\":\"\\u6210\\u529f\"},\"data\":[");
    for (i = 0; i < n; i++) {
        const char *fmt;
        switch (i % 4) {
        case 0: fmt = "%s{\"id\":%d,\"sessionId\":\"s-%d\",\"callerNum\":\"+8613500000002\","
                      "\"duration\":12.5,\"nested\":{\"id\":-1,\"data\":[1]}}"; break;
        case 1: fmt = "%s{\"sessionId\":\"s\\\"%d\",\"id\":\"%d\",\"recordFlag\":\"0\"}"; break;
        case 2: fmt = "%s {\n \"callEndTime\" : \"2018-12-28 05:42:15\" , \"id\" : %d ,"
                      "\"x\":[%d,{\"id\":0}]}"; break;
        default: fmt = "%s{\"recordFileDownloadUrl\":\"http:\\/\\/h\\/r.mp3\",\"id\":%d,"
                       "\"tags\":[],\"v\":null,\"w\":true}"; break;
        }
        if (i % 4 == 1)
            o += (size_t)snprintf(buf + o, sz - o, fmt, i ? "," : "", i, 1000 + i);
        else
            o += (size_t)snprintf(buf + o, sz - o, fmt, i ? "," : "", 1000 + i, i);
    }
    o += (size_t)snprintf(buf + o, sz - o, "]}");
    return o;
}

static void test_json_pages(void)
{
    static char page[65536];
    static char copy[65536];
    recs r;
    size_t count, off, len, cut, k;
    const char *why;
    int rc, i, bad;
    int sizes[3] = { 0, 1, 100 };

    for (k = 0; k < 3; k++) {
        len = make_page(page, sizeof page, sizes[k]);
        rc = scan(page, len, &r, &count, &why, &off);
        CHECK(rc == 0 && count == (size_t)sizes[k] && r.n == count && r.index_err == 0,
              "page of %d: rc %d count %zu (%s at %zu)", sizes[k], rc, count,
              rc == -1 ? why : "", off);
        bad = 0;
        for (i = 0; i < sizes[k] && i < (int)r.n; i++)
            if (r.kind[i] != CTC_ID_INT || r.id[i] != 1000 + i)
                bad++;
        CHECK(bad == 0, "page of %d: %d wrong ids", sizes[k], bad);
    }

    /* stopping early */
    len = make_page(page, sizeof page, 100);
    memset(&r, 0, sizeof r);
    r.stop_at = 2;
    rc = ctc_json_scan_page(page, len, on_rec, &r, &count, &why, &off);
    CHECK(rc == 7 && r.n == 3 && count == 3, "stop: rc %d n %zu count %zu", rc, r.n, count);
    /* no callback, NULL out-parameters */
    count = 0;
    CHECK(ctc_json_scan_page(page, len, NULL, NULL, &count, NULL, NULL) == 0 && count == 100,
          "NULL callback: count %zu", count);
    CHECK(ctc_json_scan_page(page, len, NULL, NULL, NULL, NULL, NULL) == 0, "NULL count");
    CHECK(ctc_json_scan_page("{", 1, NULL, NULL, NULL, NULL, NULL) == -1, "NULL why");
    CHECK(ctc_json_scan_page(NULL, 0, NULL, NULL, &count, &why, &off) == -1, "NULL body");

    /* every proper prefix of a valid document is malformed (exactly, since it is an
     * object), and is read through a copy of exactly that length, so ASan catches overreads */
    len = make_page(page, sizeof page, 100);
    bad = 0;
    for (cut = 0; cut < len; cut++) {
        char *p = malloc(cut ? cut : 1);
        if (p == NULL)
            break;
        memcpy(p, page, cut);
        memset(&r, 0, sizeof r);
        r.stop_at = -1;
        rc = ctc_json_scan_page(p, cut, on_rec, &r, &count, &why, &off);
        if (rc != -1 || r.n != 0 || off > cut)
            bad++;
        free(p);
    }
    CHECK(bad == 0, "%d prefixes of the 100-record page were not rejected", bad);
    for (k = 0; k < sizeof json_cases / sizeof json_cases[0]; k++) {
        const json_case *t = &json_cases[k];
        size_t l = t->len ? t->len : strlen(t->doc);
        for (cut = 0; cut < l; cut++) {
            char *p = malloc(cut ? cut : 1);
            if (p == NULL)
                break;
            memcpy(p, t->doc, cut);
            memset(&r, 0, sizeof r);
            r.stop_at = -1;
            rc = ctc_json_scan_page(p, cut, on_rec, &r, &count, &why, &off);
            if (!(rc == -1 || rc == 0 || rc == 1) || (rc == -1 && (r.n != 0 || off > cut))
                || (rc == 0 && count != r.n))
                bad++;
            if (t->rc != -1 && t->doc[0] == '{' && rc != -1)
                bad++;
            free(p);
        }
    }
    CHECK(bad == 0, "%d prefixes of the table documents misbehaved", bad);

    /* single-byte corruptions of the page: never a crash; a result is always consistent */
    bad = 0;
    for (cut = 0; cut < len; cut += 3) {
        static const char subst[] = "{}[]\",:\\0 ax\x01";
        size_t s;
        for (s = 0; s < sizeof subst - 1; s++) {
            memcpy(copy, page, len);
            copy[cut] = subst[s];
            memset(&r, 0, sizeof r);
            r.stop_at = -1;
            rc = ctc_json_scan_page(copy, len, on_rec, &r, &count, &why, &off);
            if (rc == -1 ? (r.n != 0 || off > len) : (rc == 0 ? count != r.n : rc != 1)
                || r.index_err)
                bad++;
        }
    }
    CHECK(bad == 0, "%d corruptions misbehaved", bad);
}

static void test_json_depth(void)
{
    static char buf[4096];
    recs r;
    size_t count, off, n, i, o;
    const char *why;
    int rc;

    /* 64 nested arrays are fine, 65 are not */
    for (n = 63; n <= 66; n++) {
        o = 0;
        for (i = 0; i < n; i++)
            buf[o++] = '[';
        for (i = 0; i < n; i++)
            buf[o++] = ']';
        rc = scan(buf, o, &r, &count, &why, &off);
        if (n <= CTC_JSON_MAX_DEPTH)
            CHECK(rc == 1, "depth %zu arrays: rc %d (%s)", n, rc, rc == -1 ? why : "");
        else
            CHECK(rc == -1 && strstr(why, "deeper") && off == CTC_JSON_MAX_DEPTH,
                  "depth %zu arrays: rc %d off %zu", n, rc, off);
    }
    /* the same with objects */
    for (n = 64; n <= 65; n++) {
        o = 0;
        for (i = 0; i < n; i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "{\"a\":");
        buf[o++] = '1';
        for (i = 0; i < n; i++)
            buf[o++] = '}';
        rc = scan(buf, o, &r, &count, &why, &off);
        CHECK(n <= CTC_JSON_MAX_DEPTH ? rc == 1 : (rc == -1 && strstr(why, "deeper") != NULL),
              "depth %zu objects: rc %d", n, rc);
    }
    /* deep nesting inside a record, at the limit and one past it */
    for (n = 61; n <= 62; n++) {
        o = (size_t)snprintf(buf, sizeof buf, "{\"data\":[{\"x\":");
        for (i = 0; i < n; i++)
            buf[o++] = '[';
        for (i = 0; i < n; i++)
            buf[o++] = ']';
        o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"id\":77}]}");
        rc = scan(buf, o, &r, &count, &why, &off);
        if (n + 3 <= CTC_JSON_MAX_DEPTH)
            CHECK(rc == 0 && r.n == 1 && r.kind[0] == CTC_ID_INT && r.id[0] == 77,
                  "deep record %zu: rc %d", n, rc);
        else
            CHECK(rc == -1 && r.n == 0, "deep record %zu: rc %d", n, rc);
    }
    /* a long unclosed run of brackets fails at the limit, not later */
    memset(buf, '[', 3000);
    rc = scan(buf, 3000, &r, &count, &why, &off);
    CHECK(rc == -1 && off == CTC_JSON_MAX_DEPTH, "3000 '[': rc %d off %zu", rc, off);
}

/* =======================================================================================
 * HTTP dates
 * ===================================================================================== */

static const time_case http_date_cases[] = {
    /* RFC 9110's own example in its three forms */
    { "Sun, 06 Nov 1994 08:49:37 GMT", 0, 1, 784111777, NULL },
    { "Sunday, 06-Nov-94 08:49:37 GMT", 0, 1, 784111777, NULL },
    { "Sun Nov  6 08:49:37 1994", 0, 1, 784111777, NULL },
    { "Thu, 01 Jan 1970 00:00:00 GMT", 0, 1, 0, NULL },
    { "Tue, 19 Jan 2038 03:14:08 GMT", 0, 1, 2147483648LL, NULL },
    { "Thu, 29 Feb 2024 23:59:59 GMT", 0, 1, 1709251199, NULL },
    { "Fri, 31 Dec 9999 23:59:59 GMT", 0, 1, 253402300799LL, NULL },
    { "Wed, 31 Dec 2014 23:59:60 GMT", 0, 1, 1420070400, NULL },
    { "Wednesday, 01-Jan-20 00:00:00 GMT", 0, 1, 1577836800, NULL },
    { "Thursday, 01-Jan-70 00:00:00 GMT", 0, 1, 0, NULL },
    { "Mon Jan 12 10:00:00 2015", 0, 1, 1421056800, NULL },
    /* the day name is not checked against the date (RFC 9110 leaves that to the sender) */
    { "Mon, 06 Nov 1994 08:49:37 GMT", 0, 1, 784111777, NULL },
    /* not dates */
    { "", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 08:49:37 UTC", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 08:49:37 GMT ", 0, 0, 0, "HTTP date" },
    { " Sun, 06 Nov 1994 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06 nov 1994 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 6 Nov 1994 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 94 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 31 Nov 1994 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 29 Feb 2023 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 00 Nov 1994 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 24:00:00 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 08:60:00 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 08:49:61 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1969 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 08:49:37 GMT\0", 30, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 08:49:37 GM", 0, 0, 0, "HTTP date" },
    { "Sun, 06 Nov 1994 8:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Xyz, 06 Nov 1994 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sunday, 06 Nov 1994 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun, 06-Nov-94 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sundae, 06-Nov-94 08:49:37 GMT", 0, 0, 0, "HTTP date" },
    { "Sun Nov 6 08:49:37 1994", 0, 0, 0, "HTTP date" },
    { "Sun Nov 06 08:49:37 1994", 0, 1, 784111777, NULL },
    { "Sun Nov  6 08:49:37 94", 0, 0, 0, "HTTP date" },
    { "1994-11-06 08:49:37", 0, 0, 0, "HTTP date" },
    { "784111777", 0, 0, 0, "HTTP date" },
    { "Sun,", 0, 0, 0, "HTTP date" },
    { "Sun", 0, 0, 0, "HTTP date" },
};

static void test_http_date(void)
{
    size_t i;
    int64_t e;
    ctc_time_why tw;

    for (i = 0; i < sizeof http_date_cases / sizeof http_date_cases[0]; i++) {
        const time_case *t = &http_date_cases[i];
        size_t len = t->len ? t->len : strlen(t->in);
        int rc;
        const char *why;
        e = 12345;
        tw.reason = 0;
        rc = ctc_http_date_parse(t->in, len, &e, &tw);
        why = rc == 0 ? NULL : time_why(&tw);
        if (t->ok)
            CHECK(rc == 0 && e == t->epoch, "http date [%s]: want %lld, got rc %d %lld (%s)",
                  t->in, (long long)t->epoch, rc, (long long)e, why ? why : "");
        else
            CHECK(rc == -1 && why && strstr(why, t->why), "http date [%s]: want error, got rc %d %lld",
                  t->in, rc, (long long)e);
    }
    /* every prefix of a valid date is an error, never an overread (ASan sees it) */
    {
        static const char *const forms[] = { "Sun, 06 Nov 1994 08:49:37 GMT",
                                             "Wednesday, 09-Nov-94 08:49:37 GMT",
                                             "Sun Nov  6 08:49:37 1994" };
        size_t f, n;
        for (f = 0; f < 3; f++) {
            size_t full = strlen(forms[f]);
            for (n = 0; n < full; n++) {
                char *copy = malloc(n ? n : 1);
                if (copy == NULL)
                    continue;
                memcpy(copy, forms[f], n);
                CHECK(ctc_http_date_parse(copy, n, &e, NULL) == -1, "http date prefix %zu of %s", n, forms[f]);
                free(copy);
            }
        }
    }
    /* IMF-fixdate against gmtime_r for random times in range */
    {
        static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
        static const char *const mn[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
        int bad = 0, k;
        for (k = 0; k < 100000; k++) {
            time_t t = (time_t)(rng() % (uint64_t)253402300800LL);
            struct tm tm;
            char buf[64];
            if (gmtime_r(&t, &tm) == NULL)
                continue;
            snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", wd[tm.tm_wday], tm.tm_mday,
                     mn[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
            if (ctc_http_date_parse(buf, strlen(buf), &e, NULL) != 0 || e != (int64_t)t)
                bad++;
        }
        CHECK(bad == 0, "http date: %d of 100000 random IMF-fixdates disagree with gmtime_r", bad);
    }
    printf("http date: %zu cases\n", sizeof http_date_cases / sizeof http_date_cases[0]);
}

int main(void)
{
    test_phone();
    test_time();
    test_http_date();
    test_json_table();
    test_json_pages();
    test_json_depth();
    test_json_unvalidated();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
