/*
 * The provider's time format, "yyyy-MM-dd HH:mm:ss" in UTC+8, to and from Unix seconds.
 * The civil-date arithmetic is done here (Howard Hinnant's days_from_civil / civil_from_days),
 * so nothing depends on TZ, the C library's time functions or the size of time_t.
 * Pure functions: no allocation, no globals that change, never read past len.
 */
#include "parsers.h"

#define UTC_OFFSET (8 * 3600)

const char *const ctc_time_sentences[CTC_TIME_REASONS] = {
    [CTC_TIME_SHORT] = "time is too short; it must look like yyyy-MM-dd HH:mm:ss",
    [CTC_TIME_SHAPE] = "time must look like yyyy-MM-dd HH:mm:ss",
    [CTC_TIME_TRAIL] = "time has characters after yyyy-MM-dd HH:mm:ss",
    [CTC_TIME_RANGE] = "time must be Unix seconds from 1970 to 9999 (1970-01-01 08:00:00 .. "
                       "9999-12-31 23:59:59 in UTC+8)",
    [CTC_TIME_OUTSZ] = "output buffer too small for a time (20 bytes needed)",
    [CTC_TIME_HTTP_DATE] = "not an HTTP date (IMF-fixdate, RFC 850 or asctime form)",
    [CTC_TIME_YEAR] = "year must be 1970-9999",
    [CTC_TIME_MONTH] = "month must be 01-12",
    [CTC_TIME_DAY] = "day is out of range for the month",
    [CTC_TIME_FEB29] = "February 29 exists only in leap years",
    [CTC_TIME_HOUR] = "hour must be 00-23",
    [CTC_TIME_MINUTE] = "minute must be 00-59",
    [CTC_TIME_SECOND] = "second must be 00-59",
};

/* a refusal: the reason (and the offending byte where there is one); why may be NULL */
static int refuse(ctc_time_why *why, int reason, size_t at, unsigned char byte)
{
    if (why != NULL) {
        why->reason = reason;
        why->at = at;
        why->byte = byte;
    }
    return -1;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
    static const unsigned char dim[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (y >= 1 here). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era;
    int64_t yoe;
    int64_t doy;
    int64_t doe;

    y -= m <= 2;
    era = y / 400;                         /* y >= 0: no negative rounding to care about */
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    int64_t era;
    int64_t doe;
    int64_t yoe;
    int64_t doy;
    int64_t mp;

    z += 719468;
    era = z / 146097;                      /* z >= 0 here */
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* n ASCII digits at s into *v; 0 or -1. */
static int digits(const char *s, int n, int *v)
{
    int i;
    int x = 0;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return 0;
}

/* n digits at s, known to be digits */
static int num(const char *s, int n)
{
    int v = 0;
    while (n-- > 0)
        v = v * 10 + (*s++ - '0');
    return v;
}

/* the offset of the first byte of s[0..CTC_TIME_LEN) that does not fit yyyy-MM-dd HH:mm:ss, or -1 */
static int misfit(const char *s)
{
    static const char shape[] = "0000-00-00 00:00:00";
    int i;

    for (i = 0; i < CTC_TIME_LEN; i++)
        if (shape[i] == '0' ? s[i] < '0' || s[i] > '9' : s[i] != shape[i])
            return i;
    return -1;
}

int ctc_time_parse(const char *s, size_t len, int64_t *epoch, ctc_time_why *why)
{
    int y, mo, d, h, mi, sec, at;
    int64_t days;

    if (s == NULL)
        len = 0;
    if (len < CTC_TIME_LEN)
        return refuse(why, CTC_TIME_SHORT, 0, 0);
    if ((at = misfit(s)) >= 0)
        return refuse(why, CTC_TIME_SHAPE, (size_t)at, (unsigned char)s[at]);
    if (len > CTC_TIME_LEN)
        return refuse(why, CTC_TIME_TRAIL, 0, 0);
    y = num(s, 4);
    mo = num(s + 5, 2);
    d = num(s + 8, 2);
    h = num(s + 11, 2);
    mi = num(s + 14, 2);
    sec = num(s + 17, 2);
    if (y < 1970)
        return refuse(why, CTC_TIME_YEAR, 0, 0);
    if (mo < 1 || mo > 12)
        return refuse(why, CTC_TIME_MONTH, 0, 0);
    if (d < 1 || d > days_in_month(y, mo))
        return refuse(why, mo == 2 && d == 29 ? CTC_TIME_FEB29 : CTC_TIME_DAY, 0, 0);
    if (h > 23)
        return refuse(why, CTC_TIME_HOUR, 0, 0);
    if (mi > 59)
        return refuse(why, CTC_TIME_MINUTE, 0, 0);
    if (sec > 59)
        return refuse(why, CTC_TIME_SECOND, 0, 0);
    days = days_from_civil(y, mo, d);
    if (epoch != NULL)
        *epoch = days * 86400 + (int64_t)h * 3600 + mi * 60 + sec - UTC_OFFSET;
    return 0;
}

static void put(char *out, int64_t v, int n)
{
    int i;

    for (i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

int ctc_time_format(int64_t epoch, char *out, size_t outsz, ctc_time_why *why)
{
    int64_t local;
    int64_t days;
    int64_t secs;
    int64_t y;
    int m, d;

    if (out == NULL || outsz < CTC_TIME_LEN + 1) {
        if (out != NULL && outsz > 0)
            out[0] = '\0';
        return refuse(why, CTC_TIME_OUTSZ, 0, 0);
    }
    if (epoch < 0 || epoch > CTC_TIME_MAX_EPOCH) {
        out[0] = '\0';
        return refuse(why, CTC_TIME_RANGE, 0, 0);
    }
    local = epoch + UTC_OFFSET;
    days = local / 86400;
    secs = local % 86400;
    civil_from_days(days, &y, &m, &d);
    put(out, y, 4);
    out[4] = '-';
    put(out + 5, m, 2);
    out[7] = '-';
    put(out + 8, d, 2);
    out[10] = ' ';
    put(out + 11, secs / 3600, 2);
    out[13] = ':';
    put(out + 14, secs / 60 % 60, 2);
    out[16] = ':';
    put(out + 17, secs % 60, 2);
    out[19] = '\0';
    return 0;
}

/* ---- HTTP dates (RFC 9110 section 5.6.7) ---- */

/* The month of a three-letter, case-sensitive name (RFC 9110: "Jan" .. "Dec"), or 0. */
static int month_of(const char *s)
{
    static const char names[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int i;

    for (i = 0; i < 12; i++)
        if (s[0] == names[3 * i] && s[1] == names[3 * i + 1] && s[2] == names[3 * i + 2])
            return i + 1;
    return 0;
}

/* The day name at s[0..n) is one of the seven (short when n == 3, long otherwise). */
static int day_name(const char *s, size_t n)
{
    static const char *const longs[7] = { "Monday", "Tuesday", "Wednesday", "Thursday",
                                          "Friday", "Saturday", "Sunday" };
    size_t i, k;

    for (i = 0; i < 7; i++) {
        const char *w = longs[i];
        size_t wl = 0;
        while (w[wl] != '\0')
            wl++;
        if (n != 3 && n != wl)
            continue;
        for (k = 0; k < n && s[k] == w[k]; k++)
            ;
        if (k == n)
            return 1;
    }
    return 0;
}

/* "HH:MM:SS" at s (8 bytes) into seconds of the day; -1 when malformed. */
static int64_t clock_of(const char *s)
{
    int h, mi, sec;

    if (digits(s, 2, &h) || s[2] != ':' || digits(s + 3, 2, &mi) || s[5] != ':'
        || digits(s + 6, 2, &sec) || h > 23 || mi > 59 || sec > 60)
        return -1;
    /* a leap second (60) is allowed by the grammar; count it as the next second */
    return (int64_t)h * 3600 + mi * 60 + sec;
}

static int finish_date(int y, int mo, int d, int64_t tod, int64_t *epoch)
{
    if (y < 1970 || mo == 0 || d < 1 || d > days_in_month(y, mo) || tod < 0)
        return -1;
    if (epoch != NULL)
        *epoch = days_from_civil(y, mo, d) * 86400 + tod;
    return 0;
}

int ctc_http_date_parse(const char *s, size_t len, int64_t *epoch, ctc_time_why *why)
{
    size_t comma = 0;
    int y, mo, d;

    refuse(why, CTC_TIME_HTTP_DATE, 0, 0); /* what a -1 below means */
    if (s == NULL)
        return -1;
    while (comma < len && comma < 10 && s[comma] != ',' && s[comma] != ' ')
        comma++;
    if (comma == len || !day_name(s, comma))
        return -1;
    if (s[comma] == ',' && comma == 3) {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        const char *p = s + 4;
        if (len != 29 || p[0] != ' ' || digits(p + 1, 2, &d) || p[3] != ' '
            || (mo = month_of(p + 4)) == 0 || p[7] != ' ' || digits(p + 8, 4, &y)
            || p[12] != ' ' || p[21] != ' ' || p[22] != 'G' || p[23] != 'M' || p[24] != 'T')
            return -1;
        return finish_date(y, mo, d, clock_of(p + 13), epoch);
    }
    if (s[comma] == ',') {
        /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
        const char *p = s + comma + 1;
        if (len != comma + 1 + 23 || p[0] != ' ' || digits(p + 1, 2, &d) || p[3] != '-'
            || (mo = month_of(p + 4)) == 0 || p[7] != '-' || digits(p + 8, 2, &y)
            || p[10] != ' ' || p[19] != ' ' || p[20] != 'G' || p[21] != 'M' || p[22] != 'T')
            return -1;
        /* RFC 9110: a two-digit year more than 50 years in the future is in the past
         * century; without a clock here, read 70-99 as 19xx and 00-69 as 20xx */
        y += y >= 70 ? 1900 : 2000;
        return finish_date(y, mo, d, clock_of(p + 11), epoch);
    }
    if (comma == 3) {
        /* asctime: "Sun Nov  6 08:49:37 1994" (day padded with a space) */
        const char *p = s + 3;
        if (len != 24 || (mo = month_of(p + 1)) == 0 || p[4] != ' ' || p[16] != ' '
            || digits(p + 17, 4, &y))
            return -1;
        if (p[5] == ' ') {
            if (digits(p + 6, 1, &d))
                return -1;
        } else if (digits(p + 5, 2, &d)) {
            return -1;
        }
        if (p[7] != ' ')
            return -1;
        return finish_date(y, mo, d, clock_of(p + 8), epoch);
    }
    return -1;
}
