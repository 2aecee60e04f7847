/* Base64 (RFC 4648, with padding): the provider's Authorization header. */
#include "ctc.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ctc_base64_len(size_t n)
{
    return 4 * ((n + 2) / 3);
}

void ctc_base64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *out++ = b64_alphabet[v >> 18 & 63];
        *out++ = b64_alphabet[v >> 12 & 63];
        *out++ = b64_alphabet[v >> 6 & 63];
        *out++ = b64_alphabet[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        *out++ = b64_alphabet[v >> 18 & 63];
        *out++ = b64_alphabet[v >> 12 & 63];
        *out++ = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
        *out++ = '=';
    }
}

/* core.base64(s) -> string */
int ctc_l_base64(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    size_t outlen = ctc_base64_len(n);
    char *out;
    if (n > ((size_t)-1 / 4) * 3 - 3)
        return luaL_error(L, "string too long to encode");
    /* a userdata, so the memory is collected even if pushlstring raises */
    out = ctc_newuserdata(L, outlen + 1);
    ctc_base64_encode(s, n, out);
    lua_pushlstring(L, out, outlen);
    return 1;
}
