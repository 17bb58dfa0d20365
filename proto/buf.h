// A growable byte buffer that msgpack_packer writes into. Growing aborts on
// out-of-memory (swd_xrealloc), so packing never fails half-way.
#ifndef SWD_PROTO_BUF_H
#define SWD_PROTO_BUF_H

#include <stddef.h>
#include <string.h>

typedef struct swd_buf {
    char *data; ///< owned; NULL until the first write
    size_t len;
    size_t cap;
} swd_buf_t;

void swd_buf_init(swd_buf_t *b);
/// Frees the bytes; the buffer may be initialised again.
void swd_buf_close(swd_buf_t *b);
/// Forgets the content, keeps the memory for reuse.
void swd_buf_reset(swd_buf_t *b);
/// Drops the first `n` bytes (n <= len).
void swd_buf_consume(swd_buf_t *b, size_t n);
/// Makes room for `n` more bytes.
void swd_buf_grow(swd_buf_t *b, size_t n);

// Inline: every packed item of every message comes through here.
static inline void swd_buf_append(swd_buf_t *b, const void *data, size_t n) {
    if (b->cap - b->len < n) {
        swd_buf_grow(b, n);
    }
    if (n > 0) { // memcpy's pointers must be valid even for 0 bytes
        memcpy(b->data + b->len, data, n);
    }
    b->len += n;
}

/// msgpack_packer write callback; `data` is the swd_buf_t.
int swd_buf_write_cb(void *data, const char *bytes, size_t n);
/// Hands the bytes to the caller (who frees them) and leaves `b` empty.
char *swd_buf_steal(swd_buf_t *b, size_t *len);

#endif
