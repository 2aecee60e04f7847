/*
 * libFuzzer harness for ctc_phone_normalize (csrc/phone.c).
 * Input: a phone number, normalized with the default country "86" and again with "1";
 * or "<cc>|<number>" (cc: the 0-4 bytes before a '|' in the first five) to fuzz the
 * default country code as well. Checks: the result's shape (+, 5-15 digits, no leading 0
 * after +, NUL inside outsz), that a normalized number is a fixed point whatever the
 * default country, that an output buffer one byte too small is an error and never
 * overrun, that one of exactly the right size succeeds, and that a failure says why.
 */
#include "fuzz.h"
#include "../../parsers.h"

static void check_phone(const char *s, size_t len, const char *cc, size_t cclen)
{
    char out[CTC_PHONE_MAX + 8];
    char again[CTC_PHONE_MAX + 8];
    ctc_phone_why why = { 0, 0 };
    size_t n, i;

    memset(out, 'Z', sizeof out);
    if (ctc_phone_normalize(s, len, cc, cclen, out, CTC_PHONE_MAX, &why) != 0) {
        /* a reason that has a sentence, and for a byte, a printable one */
        REQUIRE(why.reason > 0 && why.reason < CTC_PHONE_REASONS && ctc_phone_sentences[why.reason] != NULL);
        REQUIRE(why.reason != CTC_PHONE_CHAR || (why.detail > 0x20 && why.detail < 0x7f));
        REQUIRE(out[CTC_PHONE_MAX] == 'Z');
        return;
    }
    REQUIRE(out[CTC_PHONE_MAX] == 'Z');
    n = strlen(out);
    REQUIRE(n >= 5 && n <= 16 && out[0] == '+' && out[1] != '0');
    for (i = 1; i < n; i++)
        REQUIRE(out[i] >= '0' && out[i] <= '9');
    /* a normalized number is a fixed point, whatever the default country */
    REQUIRE(ctc_phone_normalize(out, n, "86", 2, again, CTC_PHONE_MAX, &why) == 0);
    REQUIRE(strcmp(out, again) == 0);
    REQUIRE(ctc_phone_normalize(out, n, "+44", 3, again, CTC_PHONE_MAX, &why) == 0);
    REQUIRE(strcmp(out, again) == 0);
    /* exactly n + 1 bytes is enough; n is an error, and nothing is written past it */
    memset(again, 'Z', sizeof again);
    REQUIRE(ctc_phone_normalize(s, len, cc, cclen, again, n + 1, &why) == 0);
    REQUIRE(strcmp(out, again) == 0 && again[n + 1] == 'Z');
    memset(again, 'Z', sizeof again);
    why.reason = 0;
    REQUIRE(ctc_phone_normalize(s, len, cc, cclen, again, n, &why) == -1);
    REQUIRE(why.reason == CTC_PHONE_OUTSZ && again[n] == 'Z');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = fuzz_copy(data, size);
    size_t bar;

    if (buf == NULL)
        return 0;
    for (bar = 0; bar < size && bar < 5 && buf[bar] != '|'; bar++)
        ;
    if (bar < size && bar < 5 && buf[bar] == '|') {
        /* separate heap copies: an overread of either shows */
        char *cc = fuzz_copy(data, bar);
        char *num = fuzz_copy(data + bar + 1, size - bar - 1);
        if (cc != NULL && num != NULL)
            check_phone(num, size - bar - 1, cc, bar);
        free(cc);
        free(num);
    } else {
        check_phone(buf, size, "86", 2);
        check_phone(buf, size, "1", 1);
    }
    free(buf);
    return 0;
}
