/* Growable byte buffer: never aborts, reports allocation failure instead. */
#include <stdlib.h>
#include <string.h>
#include "buf.h"

int ctc_buf_append(ctc_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (n > (size_t)-1 - b->len - 1)
        return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *d;
        while (cap < b->len + n + 1)
            cap = cap > (size_t)-1 / 2 ? b->len + n + 1 : cap * 2;
        d = realloc(b->data, cap);
        if (d == NULL)
            return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0'; /* lets header parsing use string functions */
    return 0;
}

int ctc_buf_set(ctc_buf *b, const void *p, size_t n)
{
    ctc_buf_reset(b);
    return ctc_buf_append(b, p, n);
}

void ctc_buf_reset(ctc_buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void ctc_buf_free(ctc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
