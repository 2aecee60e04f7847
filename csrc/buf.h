/* A growable byte buffer for C memory that must outlive no Lua call. */
#ifndef CTC_BUF_H
#define CTC_BUF_H
#include <stddef.h>

/* hidden whatever the build's flags (the rockspec cannot pass -fvisibility) */
#pragma GCC visibility push(hidden)

typedef struct ctc_buf {
    char *data;
    size_t len;
    size_t cap;
} ctc_buf;

/* Both return 0, or -1 when memory ran out (the buffer is left as it was). */
int ctc_buf_append(ctc_buf *b, const void *p, size_t n);
int ctc_buf_set(ctc_buf *b, const void *p, size_t n);
void ctc_buf_reset(ctc_buf *b);
void ctc_buf_free(ctc_buf *b);
#pragma GCC visibility pop

#endif
