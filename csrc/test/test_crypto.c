/*
 * Known-answer tests for the core's SHA-256 (FIPS 180-4 and its examples),
 * base64 (RFC 4648 section 10), HMAC-SHA256 (RFC 4231 cases 1-7) and AWS Signature V4
 * (the S3 documentation's worked examples and cases of the aws-sig-v4-test-suite; sigv4_expected.py
 * beside this file recomputes every expected signature with Python's hmac and hashlib).
 * The digest of a download and the
 * Authorization header depend on them, and until now each had one vector.
 * Built with ASan+UBSan by `make crypto-test`; ends with "N passed, M failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../sha256.h"
#include "../sigv4.h"

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

static void hex_n(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* RFC 4231 section 4: test cases 1-7 (case 5's output is truncated to 128 bits) */
static void hmac_vectors(void)
{
    static const char *const data7 = "This is a test using a larger than block-size key and a larger than block-size "
                                     "data. The key needs to be hashed before being used by the HMAC algorithm.";
    unsigned char k20b[20], kaa20[20], k25[25], k0c[20], kaa131[131], dd50[50], cd50[50];
    struct {
        const unsigned char *key;
        size_t keylen;
        const char *data;
        size_t datalen;
        const char *want;
    } v[7];
    memset(k20b, 0x0b, sizeof k20b);
    memset(kaa20, 0xaa, sizeof kaa20);
    for (int i = 0; i < 25; i++)
        k25[i] = (unsigned char)(i + 1);
    memset(k0c, 0x0c, sizeof k0c);
    memset(kaa131, 0xaa, sizeof kaa131);
    memset(dd50, 0xdd, sizeof dd50);
    memset(cd50, 0xcd, sizeof cd50);
#define HCASE(i, k, kl, d, dl, w) (v[i].key = (k), v[i].keylen = (kl), v[i].data = (const char *)(d), \
                                   v[i].datalen = (dl), v[i].want = (w))
    HCASE(0, k20b, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    HCASE(1, (const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28,
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    HCASE(2, kaa20, 20, dd50, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    HCASE(3, k25, 25, cd50, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    HCASE(4, k0c, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b");
    HCASE(5, kaa131, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
          "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    HCASE(6, kaa131, 131, data7, strlen(data7), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
#undef HCASE
    for (int i = 0; i < 7; i++) {
        unsigned char mac[32];
        char got[65], what[128];
        ctc_hmac_sha256(v[i].key, v[i].keylen, v[i].data, v[i].datalen, mac);
        hex_n(mac, 32, got);
        snprintf(what, sizeof what, "HMAC-SHA256 RFC 4231 test case %d: got %s", i + 1, got);
        check(strncmp(got, v[i].want, strlen(v[i].want)) == 0, what);
    }
}

#define S(x) x, sizeof(x) - 1
#define HDR(n, v) { n, v, sizeof(n) - 1, sizeof(v) - 1 }
static const char EMPTY_HASH[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* signs and checks the Signature= of the Authorization value; creq_want (may be NULL) is the
 * whole canonical request expected */
static void sig_case(const char *name, const char *method, const char *path, const char *query,
                     const ctc_sigv4_header *h, size_t nh, const char *payload_hash, const ctc_sigv4_key *k,
                     const char *want_sig, const char *creq_want)
{
    ctc_sigv4_request r = { method, path, query, payload_hash, strlen(method), strlen(path), strlen(query),
                            strlen(payload_hash), h, nh };
    ctc_buf auth = { 0 }, creq = { 0 };
    const char *why = NULL, *sig;
    char what[256];
    int rc = ctc_sigv4_authorization(&r, k, &auth, &creq, &why);
    sig = rc == 0 ? strstr(auth.data, ",Signature=") : NULL;
    snprintf(what, sizeof what, "sigv4 %s: %s", name, rc == 0 ? auth.data : why);
    check(sig != NULL && strcmp(sig + 11, want_sig) == 0, what);
    if (creq_want != NULL) {
        snprintf(what, sizeof what, "sigv4 %s: canonical request", name);
        check(rc == 0 && strcmp(creq.data, creq_want) == 0, what);
        if (rc == 0 && strcmp(creq.data, creq_want) != 0)
            printf("got:\n%s\nwant:\n%s\n", creq.data, creq_want);
    }
    ctc_buf_free(&auth);
    ctc_buf_free(&creq);
}

static ctc_sigv4_key key_of(const char *akid, const char *secret, const char *service, int64_t t)
{
    ctc_sigv4_key k = { "us-east-1", service, akid, secret, 9, strlen(service), strlen(akid), strlen(secret), "" };
    check(ctc_sigv4_amz_date(t, k.amz_date, NULL) == 0, "amz date");
    return k;
}

/* the S3 documentation's "Signature Calculations for the Authorization Header: Transferring
 * Payload in a Single Chunk" examples */
static void sigv4_s3_examples(void)
{
    ctc_sigv4_key k = key_of("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "s3", 1369353600);
    const char *put_hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    ctc_sigv4_header get[] = { HDR("Host", "examplebucket.s3.amazonaws.com"), HDR("Range", "bytes=0-9"),
                               HDR("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb924"
                                                                  "27ae41e4649b934ca495991b7852b855"),
                               HDR("x-amz-date", "20130524T000000Z") };
    ctc_sigv4_header put[] = { HDR("Host", "examplebucket.s3.amazonaws.com"),
                               HDR("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                               HDR("x-amz-date", "20130524T000000Z"),
                               HDR("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                               HDR("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbb"
                                                                  "a87d2b6b4b4e99e42034a8b803f8b072") };
    ctc_sigv4_header bucket[] = { HDR("Host", "examplebucket.s3.amazonaws.com"),
                                  HDR("x-amz-date", "20130524T000000Z"),
                                  HDR("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb924"
                                                                  "27ae41e4649b934ca495991b7852b855") };
    unsigned char body_hash[32];
    char body_hex[65];
    ctc_sha256 c;
    ctc_buf sts = { 0 };
    const char *creq = "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                       "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
                       "x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n"
                       "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    check(strcmp(k.amz_date, "20130524T000000Z") == 0, "amz date of 1369353600");
    sig_case("S3 GET Object", "GET", "/test.txt", "", get, 4, EMPTY_HASH, &k,
             "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41", creq);
    /* the documented string to sign's last line: the canonical request's SHA-256 */
    check(ctc_sigv4_string_to_sign(&k, creq, strlen(creq), &sts, NULL) == 0 &&
              strcmp(sts.data, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                               "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972") == 0,
          "sigv4 S3 GET Object: string to sign");
    ctc_buf_free(&sts);

    ctc_sha256_init(&c);
    ctc_sha256_update(&c, "Welcome to Amazon S3.", 21);
    ctc_sha256_final(&c, body_hash);
    hex_n(body_hash, 32, body_hex);
    check(strcmp(body_hex, put_hash) == 0, "sha256 of \"Welcome to Amazon S3.\"");
    /* the key "test$file.text": '$' encoded once, as %24 */
    sig_case("S3 PUT Object", "PUT", "/test$file.text", "", put, 5, put_hash, &k,
             "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
             "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"
             "host:examplebucket.s3.amazonaws.com\n"
             "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072\n"
             "x-amz-date:20130524T000000Z\nx-amz-storage-class:REDUCED_REDUNDANCY\n\n"
             "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class\n"
             "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    sig_case("S3 GET Bucket Lifecycle", "GET", "/", "lifecycle", bucket, 3, EMPTY_HASH, &k,
             "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543", NULL);
    sig_case("S3 GET Bucket (list objects)", "GET", "/", "max-keys=2&prefix=J", bucket, 3, EMPTY_HASH, &k,
             "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", NULL);
    /* the same request, its query given in another order: one canonical form */
    sig_case("S3 GET Bucket, query reordered", "GET", "/", "prefix=J&max-keys=2", bucket, 3, EMPTY_HASH, &k,
             "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7", NULL);
}

/* aws-sig-v4-test-suite (2015-08-30) cases that apply to S3: their paths need no normalization,
 * so S3's rule (each segment encoded once, nothing removed) gives the suite's canonical URI */
static void sigv4_suite(void)
{
    ctc_sigv4_key k = key_of("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "service", 1440938160);
    ctc_sigv4_header base[] = { HDR("Host", "example.amazonaws.com"), HDR("X-Amz-Date", "20150830T123600Z") };
    ctc_sigv4_header trim[] = { HDR("Host", "example.amazonaws.com"), HDR("My-Header1", " value1"),
                                HDR("My-Header2", " \"a   b   c\""), HDR("X-Amz-Date", "20150830T123600Z") };
    ctc_sigv4_header form[] = { HDR("Content-Type", "application/x-www-form-urlencoded"),
                                HDR("Host", "example.amazonaws.com"), HDR("X-Amz-Date", "20150830T123600Z") };

    check(strcmp(k.amz_date, "20150830T123600Z") == 0, "amz date of 1440938160");
    sig_case("get-vanilla", "GET", "/", "", base, 2, EMPTY_HASH, &k,
             "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
             "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sig_case("get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", base, 2, EMPTY_HASH,
             &k, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500", NULL);
    sig_case("get-header-value-trim", "GET", "/", "", trim, 4, EMPTY_HASH, &k,
             "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
             "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
             "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n"
             "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sig_case("post-x-www-form-urlencoded", "POST", "/", "", form, 3,
             "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e", &k,
             "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a", NULL);
    sig_case("get-space", "GET", "/example space/", "", base, 2, EMPTY_HASH, &k,
             "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741", NULL);
    sig_case("get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", "",
             base, 2, EMPTY_HASH, &k, "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f", NULL);
    sig_case("get-utf8", "GET", "/\xe1\x88\xb4", "", base, 2, EMPTY_HASH, &k,
             "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85", NULL);
}

static void expect_text(const char *what, int rc, const ctc_buf *b, const char *want)
{
    char msg[256];
    snprintf(msg, sizeof msg, "%s: got \"%s\"", what, rc == 0 && b->data ? b->data : "(error)");
    check(rc == 0 && b->len == strlen(want) && memcmp(b->data, want, b->len) == 0, msg);
}

/* the pieces on their own: S3's encoding, the query and header rules, refusals */
static void sigv4_parts(void)
{
    ctc_buf b = { 0 }, l = { 0 };
    const char *why = NULL;
    char date[17];
    ctc_sigv4_header bad_value[] = { HDR("host", "a\r\nx-evil: 1") };
    ctc_sigv4_header bad_name[] = { HDR("ho st", "a") };
    ctc_sigv4_header twice[] = { HDR("X-B", "2"), HDR("host", "h"), HDR("x-b", " 1 "), HDR("x-a", "") };

    expect_text("key with space, non-ASCII, reserved",
                ctc_sigv4_canonical_uri(&b, S("calls/a b/\xc3\xbc?#+%.wav"), NULL), &b,
                "/calls/a%20b/%C3%BC%3F%23%2B%25.wav");
    ctc_buf_reset(&b);
    expect_text("no normalization (S3)", ctc_sigv4_canonical_uri(&b, S("/a//./../b"), NULL), &b, "/a//./../b");
    ctc_buf_reset(&b);
    expect_text("empty path", ctc_sigv4_canonical_uri(&b, "", 0, NULL), &b, "/");
    ctc_buf_reset(&b);
    expect_text("query decoded, encoded once, sorted",
                ctc_sigv4_canonical_query(&b, S("b=%2f x&a=2&a=1&flag&&c=%zz&d=a+b"), NULL), &b,
                "a=1&a=2&b=%2F%20x&c=%25zz&d=a%2Bb&flag=");
    ctc_buf_reset(&b);
    expect_text("headers lower-cased, sorted, joined",
                ctc_sigv4_canonical_headers(twice, 4, &b, &l, NULL), &b, "host:h\nx-a:\nx-b:2,1\n");
    expect_text("signed headers list", 0, &l, "host;x-a;x-b");
    ctc_buf_reset(&b);
    ctc_buf_reset(&l);
    check(ctc_sigv4_canonical_headers(bad_value, 1, &b, &l, &why) == -1 && why != NULL, "CR LF in a value refused");
    check(ctc_sigv4_canonical_headers(bad_name, 1, &b, &l, &why) == -1 && why != NULL, "space in a name refused");
    check(ctc_sigv4_amz_date(-1, date, &why) == -1 && ctc_sigv4_amz_date(CTC_SIGV4_MAX_TIME + 1, date, &why) == -1,
          "times out of range refused");
    check(ctc_sigv4_amz_date(CTC_SIGV4_MAX_TIME, date, NULL) == 0 && strcmp(date, "99991231T235959Z") == 0 &&
              ctc_sigv4_amz_date(951782400, date, NULL) == 0 && strcmp(date, "20000229T000000Z") == 0 &&
              ctc_sigv4_amz_date(0, date, NULL) == 0 && strcmp(date, "19700101T000000Z") == 0,
          "amz dates at the ends and on a leap day");
    ctc_buf_free(&b);
    ctc_buf_free(&l);
}
#undef S
#undef HDR

int main(void)
{
    sha256_vectors();
    base64_vectors();
    hmac_vectors();
    sigv4_s3_examples();
    sigv4_suite();
    sigv4_parts();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
