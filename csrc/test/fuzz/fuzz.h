/*
 * Shared by the libFuzzer harnesses in this directory (scripts/fuzz builds and runs them).
 * A broken invariant names itself on stderr, then traps, so libFuzzer saves the input.
 */
#ifndef CTC_FUZZ_H
#define CTC_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                      \
    do {                                                                                \
        if (!(c)) {                                                                     \
            fprintf(stderr, "invariant broken at %s:%d: %s\n", __FILE__, __LINE__, #c); \
            __builtin_trap();                                                           \
        }                                                                               \
    } while (0)

/* A heap copy of exactly n bytes (at least one allocated), so ASan sees a read past the end;
 * the fuzzer's own buffer is already exact, but the parsers also get sub-ranges. */
static inline char *fuzz_copy(const uint8_t *data, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (p != NULL && n > 0)
        memcpy(p, data, n);
    return p;
}

#endif
