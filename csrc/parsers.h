/*
 * clicktocall parsers: pure functions over bytes for phone numbers and times, and the JSON
 * decoder's contract. No Lua, no libcurl, no allocation, no globals that change (thread-safe),
 * never abort(). Inputs are (pointer, length) and need not be NUL-terminated; they may hold
 * NUL bytes. A refusal is a reason code and the offending byte where there is one; the
 * sentence is written once, by the Lua binding (request.c), from the parser's table.
 * The Lua bindings live elsewhere; the libFuzzer harnesses in csrc/test/fuzz/ call these.
 */
#ifndef CTC_PARSERS_H
#define CTC_PARSERS_H
#include <stddef.h>
#include <stdint.h>

/* hidden whatever the build's flags (the rockspec cannot pass -fvisibility) */
#pragma GCC visibility push(hidden)

#define CTC_PHONE_MAX 24   /* "+", up to 15 digits of E.164, NUL: room to spare */

/* Why a phone number was refused: a reason, and its detail where the sentence has one (the
 * offending byte for CTC_PHONE_CHAR, the number of digits for CTC_PHONE_DIGITS; else the byte
 * or 0). ctc_phone_sentences[reason] is the sentence, a format for that detail. */
enum {
    CTC_PHONE_EMPTY = 1, CTC_PHONE_NO_DIGITS, CTC_PHONE_TOO_MANY, CTC_PHONE_PLUS, CTC_PHONE_NUL,
    CTC_PHONE_CTRL, CTC_PHONE_FULLWIDTH, CTC_PHONE_NONASCII, CTC_PHONE_CHAR, CTC_PHONE_INTL_EMPTY,
    CTC_PHONE_CC_ZERO, CTC_PHONE_86_EMPTY, CTC_PHONE_DIGITS, CTC_PHONE_MOBILE_PREFIX, CTC_PHONE_AREA,
    CTC_PHONE_SERVICE, CTC_PHONE_LAND_SHORT, CTC_PHONE_SUB_LEN, CTC_PHONE_SUB_FIRST,
    CTC_PHONE_NO_TRUNK, CTC_PHONE_86_REST, CTC_PHONE_SHORT, CTC_PHONE_LONG, CTC_PHONE_DEFAULT_CC,
    CTC_PHONE_OUTSZ, CTC_PHONE_REASONS
};
typedef struct ctc_phone_why {
    int reason;
    int detail;
} ctc_phone_why;
extern const char *const ctc_phone_sentences[CTC_PHONE_REASONS];

/* Normalizes a phone number to E.164 "+<cc><national number>".
 * cc/cclen: the default country code digits ("86"; a leading '+' is accepted) used when the
 * number has no international prefix. Returns 0 and writes a NUL-terminated string to out
 * (outsz >= CTC_PHONE_MAX), or -1 and sets *why (why may be NULL). */
int ctc_phone_normalize(const char *s, size_t len, const char *cc, size_t cclen,
                        char *out, size_t outsz, ctc_phone_why *why);

/* Why a time was refused: a reason, and for CTC_TIME_SHAPE the offending byte and its offset.
 * The reasons before CTC_TIME_YEAR are about the time as a whole ("time is too short; ..."), the
 * others about a part of it ("month must be 01-12"). ctc_time_sentences[reason] is the sentence. */
enum {
    CTC_TIME_SHORT = 1, CTC_TIME_SHAPE, CTC_TIME_TRAIL, CTC_TIME_RANGE, CTC_TIME_OUTSZ, CTC_TIME_HTTP_DATE,
    CTC_TIME_YEAR, CTC_TIME_MONTH, CTC_TIME_DAY, CTC_TIME_FEB29, CTC_TIME_HOUR, CTC_TIME_MINUTE,
    CTC_TIME_SECOND, CTC_TIME_REASONS
};
typedef struct ctc_time_why {
    int reason;
    size_t at;            /* CTC_TIME_SHAPE: the offset of the byte that does not fit, and the byte */
    unsigned char byte;
} ctc_time_why;
extern const char *const ctc_time_sentences[CTC_TIME_REASONS];

/* Parses exactly "yyyy-MM-dd HH:mm:ss" as a time in UTC+8 (the provider's clock)
 * into Unix seconds. Validates every field (month 1-12, days in month with leap
 * years, hour 0-23, minute/second 0-59), years 1970-9999. 0 or -1 with *why (why may be NULL).
 * Note: 1970-01-01 00:00:00 .. 07:59:59 (UTC+8) parse to -28800 .. -1. */
int ctc_time_parse(const char *s, size_t len, int64_t *epoch, ctc_time_why *why);

/* Formats Unix seconds as "yyyy-MM-dd HH:mm:ss" in UTC+8 into out (NUL-terminated,
 * outsz >= 20). Range: 0 .. CTC_TIME_MAX_EPOCH = 253402271999, which is
 * 9999-12-31 23:59:59 in UTC+8 (253402300799 - 8*3600), so years 1970-9999 round-trip.
 * 0 or -1 with *why. Does not depend on TZ or any libc time function. */
#define CTC_TIME_LEN 19    /* strlen("yyyy-MM-dd HH:mm:ss") */
#define CTC_TIME_MAX_EPOCH ((int64_t)253402271999)
int ctc_time_format(int64_t epoch, char *out, size_t outsz, ctc_time_why *why);

/* Parses an HTTP date (RFC 9110 section 5.6.7): the preferred IMF-fixdate
 * "Sun, 06 Nov 1994 08:49:37 GMT" and the obsolete RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT";
 * a two-digit year 70-99 is 19xx, 00-69 is 20xx) and asctime ("Sun Nov  6 08:49:37 1994")
 * forms, exactly (case-sensitive names, GMT only, no surrounding whitespace), into Unix
 * seconds. Years 1970-9999; every field is validated; a leap second (60) counts as the
 * next second. 0, or -1 with *why. */
int ctc_http_date_parse(const char *s, size_t len, int64_t *epoch, ctc_time_why *why);

/* JSON: nesting deeper than this is an error. A record's "id" is read by one rule (the decoder,
 * jsondecode.c, and the test oracle, csrc/test/oracle/jsonscan.c):
 *   CTC_ID_INT     a JSON integer in plain digits (0 or [1-9][0-9]*: no sign, fraction or exponent,
 *                  so 5.0, 5e0, -0 are not) or a string of 1-19 decimal digits, at most INT64_MAX
 *   CTC_ID_MISSING the element is an object without "id" (or not an object)
 *   CTC_ID_OTHER   "id" exists but is something else (float, overflow, bool, ...) */
#define CTC_JSON_MAX_DEPTH 64
enum { CTC_ID_INT = 0, CTC_ID_MISSING = 1, CTC_ID_OTHER = 2 };

/* ---- the one Lua-facing decoder (csrc/jsondecode.c): not pure, it pushes Lua values ---- */

/* What ctc_json_decode learnt of the page: the last top-level "data" member, when its value is
 * an array (found), read by the id rule above as it was decoded (indexes are 1-based; 0 = none). */
typedef struct ctc_json_page {
    int64_t asked;       /* in: the ids must rise above it */
    int found;           /* the last top-level "data" is an array */
    size_t count;        /* its elements */
    size_t bad_index;    /* the first element whose id is not CTC_ID_INT, and its kind */
    int bad_kind;
    size_t stall_index;  /* the first CTC_ID_INT id not above the one before (or asked) */
    int64_t stall_id, stall_prev;
    int64_t last_id;     /* the last CTC_ID_INT id */
} ctc_json_page;
struct lua_State;
/* Decodes body[0..len), which must be a Lua string's bytes (body[len] is NUL), in one pass:
 * pushes the value lua-cjson 2.1.0 gives (decode_invalid_numbers off, decode_max_depth
 * CTC_JSON_MAX_DEPTH: null is a NULL lightuserdata, numbers are doubles) and returns 0, or refuses
 * what cjson refuses: pushes what is wrong and where ("expected a value at byte offset 0"),
 * returns -1. The
 * elements of the last top-level "data" array that are objects are records: their null members
 * are absent, their whole numbers below 2^53 integers (5.3+), their "id" when it is a
 * CTC_ID_INT one exact (ctc_push_id). Never raises (a memory error is a -1 with its message). */
int ctc_json_decode(struct lua_State *L, const char *body, size_t len, ctc_json_page *page);
#pragma GCC visibility pop

#endif
