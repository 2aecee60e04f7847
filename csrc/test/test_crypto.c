/*
 * Known-answer tests for the core's SHA-256 (FIPS 180-4 and its examples) and
 * base64 (RFC 4648 section 10). The digest of a download and the
 * Authorization header depend on them, and until now each had one vector.
 * Built with ASan+UBSan by `make crypto-test`; ends with "N passed, M failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../sha256.h"

size_t ctc_base64_len(size_t n);
void ctc_base64_encode(const unsigned char *in, size_t n, char *out);

static int passed, failed;

static void check(int ok, const char *what)
{
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL: %s\n", what);
    }
}

static void hex(const unsigned char d[32], char out[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[64] = '\0';
}

/* the digest of msg fed in pieces of `step` bytes (0: all at once) */
static void digest(const unsigned char *msg, size_t n, size_t step, char out[65])
{
    ctc_sha256 c;
    unsigned char d[32];
    ctc_sha256_init(&c);
    if (step == 0)
        step = n ? n : 1;
    for (size_t at = 0; at < n; at += step)
        ctc_sha256_update(&c, msg + at, n - at < step ? n - at : step);
    ctc_sha256_final(&c, d);
    hex(d, out);
}

static void sha_case(const char *name, const unsigned char *msg, size_t n, const char *want)
{
    /* whole, byte by byte, and in pieces that straddle the 64-byte block */
    static const size_t steps[] = { 0, 1, 7, 63, 64, 65 };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char got[65], what[160];
        digest(msg, n, steps[i], got);
        snprintf(what, sizeof what, "sha256(%s) in pieces of %zu: got %s", name, steps[i], got);
        check(strcmp(got, want) == 0, what);
    }
}

static unsigned char *repeat(unsigned char byte, size_t n)
{
    unsigned char *p = malloc(n ? n : 1);
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    memset(p, byte, n);
    return p;
}

static void sha256_vectors(void)
{
    static const struct {
        size_t n;
        const char *want;
    } runs_of_a[] = {
        /* the lengths around the padding boundary: 55 fits the length in one block, 56 does not */
        { 55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318" },
        { 56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a" },
        { 63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34" },
        { 64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb" },
        { 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
    };
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha_case("\"\"", (const unsigned char *)"", 0,
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha_case("\"abc\"", (const unsigned char *)"abc", 3,
             "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha_case("448-bit message", (const unsigned char *)m448, strlen(m448),
             "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    sha_case("896-bit message", (const unsigned char *)m896, strlen(m896),
             "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    for (size_t i = 0; i < sizeof runs_of_a / sizeof runs_of_a[0]; i++) {
        char name[48];
        unsigned char *msg = repeat('a', runs_of_a[i].n);
        snprintf(name, sizeof name, "%zu x 'a'", runs_of_a[i].n);
        sha_case(name, msg, runs_of_a[i].n, runs_of_a[i].want);
        free(msg);
    }
}

static void base64_vectors(void)
{
    /* RFC 4648 section 10 */
    static const struct {
        const char *in, *want;
    } v[] = {
        { "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
        { "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        size_t n = strlen(v[i].in), len = ctc_base64_len(n);
        char *out = malloc(len + 1), what[96];
        if (!out) {
            printf("out of memory\n");
            exit(2);
        }
        ctc_base64_encode((const unsigned char *)v[i].in, n, out);
        out[len] = '\0';
        snprintf(what, sizeof what, "base64(\"%s\") = \"%s\", length %zu", v[i].in, out, len);
        check(len == strlen(v[i].want) && strcmp(out, v[i].want) == 0, what);
        free(out);
    }
    /* every byte value survives: the secret may hold any of them but controls */
    {
        unsigned char all[256];
        char out[345];
        for (int i = 0; i < 256; i++)
            all[i] = (unsigned char)i;
        ctc_base64_encode(all, sizeof all, out);
        out[344] = '\0';
        check(ctc_base64_len(sizeof all) == 344 && strncmp(out, "AAECAwQFBgcICQoLDA0ODxAREhMU", 28) == 0 &&
                  strcmp(out + 334, "r7/P3+/w==") == 0,
              "base64 of the 256 byte values");
    }
}

int main(void)
{
    sha256_vectors();
    base64_vectors();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
