/* The JSON byte classes the decoder (jsondecode.c) and the test oracle (test/oracle/jsonscan.c)
 * share: one definition of whitespace, digits and \u hex, so the two never disagree. */
#ifndef CTC_JSONCHAR_H
#define CTC_JSONCHAR_H
#include <stddef.h>

static inline int ctc_json_is_ws(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static inline int ctc_json_is_digit(unsigned char ch)
{
    return ch >= '0' && ch <= '9';
}

static inline int ctc_json_hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Four hex digits at b[i..i+4), read one at a time, so a NUL stops it (callers either
 * checked the bounds or read a NUL-terminated body); -1 if not hex. */
static inline long ctc_json_hex4(const unsigned char *b, size_t i)
{
    long v = 0;
    int k;

    for (k = 0; k < 4; k++) {
        int h = ctc_json_hexval(b[i + k]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}
#endif
