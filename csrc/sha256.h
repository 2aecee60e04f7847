/* SHA-256 (FIPS 180-4): the checksum download_recording reports. */
#ifndef CTC_SHA256_H
#define CTC_SHA256_H
#include <stddef.h>
#include <stdint.h>

/* hidden whatever the build's flags (the rockspec cannot pass -fvisibility) */
#pragma GCC visibility push(hidden)

typedef struct ctc_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    unsigned char block[64];
    size_t fill;
} ctc_sha256;

void ctc_sha256_init(ctc_sha256 *c);
void ctc_sha256_update(ctc_sha256 *c, const void *p, size_t n);
void ctc_sha256_final(ctc_sha256 *c, unsigned char out[32]);
#pragma GCC visibility pop

#endif
