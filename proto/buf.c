#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/buf.h"

void swd_buf_init(swd_buf_t *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void swd_buf_close(swd_buf_t *b) {
    free(b->data);
    swd_buf_init(b);
}

void swd_buf_reset(swd_buf_t *b) {
    b->len = 0;
}

void swd_buf_consume(swd_buf_t *b, size_t n) {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void swd_buf_grow(swd_buf_t *b, size_t n) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < n) {
        cap *= 2;
    }
    if (cap != b->cap) {
        b->data = swd_xrealloc(b->data, cap);
        b->cap = cap;
    }
}

int swd_buf_write_cb(void *data, const char *bytes, size_t n) {
    swd_buf_append(data, bytes, n);
    return 0;
}

char *swd_buf_steal(swd_buf_t *b, size_t *len) {
    char *p = b->data;
    *len = b->len;
    swd_buf_init(b);
    return p;
}
