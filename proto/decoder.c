#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/decoder.h"

// What one msgpack header says about the item it starts.
typedef struct header {
    size_t size;      // bytes of the header itself, integer values included
    uint64_t payload; // raw bytes that follow (str, bin, ext, float)
    uint64_t items;   // direct children of a container (2 per map entry)
    bool container;
    bool is_uint; // a non-negative integer, whose value is in `value`
    uint64_t value;
} header_t;

// The objects of a typical message fit the first chunk of its zone, which
// every connection keeps (a batch takes a few more, freed after it):
// msgpack-c's default is 8 KiB, mostly unused by an idle connection.
#define ZONE_CHUNK 2048

#if defined(__SANITIZE_ADDRESS__)
#define SWD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWD_ASAN 1
#endif
#endif
#ifndef SWD_ASAN
#define SWD_ASAN 0
#endif

struct swd_decoder {
    char *buf;
    size_t cap;
    size_t start; // first byte of the frame being scanned
    size_t end;   // one past the last byte read
    size_t max;

    // Scanner state for the frame at `start`.
    size_t scan; // offset from `start` of the next header to read
    int depth;
    uint64_t left[SWD_PROTO_MAX_DEPTH]; // items still to come per open container
    bool started;
    bool top_array;
    uint64_t top_items; // children of the top-level array seen so far
    bool kind_zero;
    bool msgid_known;
    uint64_t msgid;

    // One zone for the objects of the current message, cleared (its first
    // chunk kept) rather than freed between messages: msgpack_unpack_next()
    // would malloc and free an 8 KiB zone per message.
    msgpack_zone zone;
    msgpack_object obj;
    bool failed;
    swd_proto_error_t error;
};

static uint64_t read_be(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

// Sized fields by type byte: how many length (or value) bytes follow it.
static int parse_sized(const uint8_t *p, size_t avail, size_t n, header_t *h) {
    if (avail < 1 + n) {
        return 0;
    }
    h->size = 1 + n;
    h->value = read_be(p + 1, n);
    return 1;
}

// Reads the header at `p`: 1 when complete, 0 when more bytes are needed,
// -1 for the one byte msgpack never uses.
static int parse_header(const uint8_t *p, size_t avail, header_t *h) {
    uint8_t t = p[0];
    memset(h, 0, sizeof(*h));
    h->size = 1;
    if (t <= 0x7f) {
        h->is_uint = true;
        h->value = t;
        return 1;
    }
    if (t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        return 1;
    }
    if (t <= 0x8f) {
        h->container = true;
        h->items = 2u * (t & 0x0fu);
        return 1;
    }
    if (t <= 0x9f) {
        h->container = true;
        h->items = t & 0x0fu;
        return 1;
    }
    if (t <= 0xbf) {
        h->payload = t & 0x1fu;
        return 1;
    }
    int r;
    switch (t) {
    case 0xc4: // bin 8/16/32
    case 0xc5:
    case 0xc6:
        r = parse_sized(p, avail, (size_t)1 << (t - 0xc4), h);
        h->payload = h->value;
        return r;
    case 0xd9: // str 8/16/32
    case 0xda:
    case 0xdb:
        r = parse_sized(p, avail, (size_t)1 << (t - 0xd9), h);
        h->payload = h->value;
        return r;
    case 0xc7: // ext 8/16/32: length, then a type byte
    case 0xc8:
    case 0xc9:
        r = parse_sized(p, avail, (size_t)1 << (t - 0xc7), h);
        h->payload = h->value + 1;
        return r;
    case 0xca:
        h->payload = 4;
        return 1;
    case 0xcb:
        h->payload = 8;
        return 1;
    case 0xcc: // uint 8/16/32/64
    case 0xcd:
    case 0xce:
    case 0xcf:
        r = parse_sized(p, avail, (size_t)1 << (t - 0xcc), h);
        h->is_uint = true;
        return r;
    case 0xd0: // int 8/16/32/64: non-negative values count as unsigned
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size_t n = (size_t)1 << (t - 0xd0);
        r = parse_sized(p, avail, n, h);
        h->is_uint = r == 1 && (p[1] & 0x80u) == 0;
        return r;
    }
    case 0xd4: // fixext 1/2/4/8/16: a type byte, then the data
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        h->payload = 1 + ((uint64_t)1 << (t - 0xd4));
        return 1;
    case 0xdc: // array 16/32
    case 0xdd:
        r = parse_sized(p, avail, t == 0xdc ? 2 : 4, h);
        h->container = true;
        h->items = h->value;
        return r;
    case 0xde: // map 16/32
    case 0xdf:
        r = parse_sized(p, avail, t == 0xde ? 2 : 4, h);
        h->container = true;
        h->items = 2 * h->value;
        return r;
    default: // 0xc1
        return -1;
    }
}

__attribute__((format(printf, 4, 5))) static int fail(swd_decoder_t *d, int err, bool undecodable,
                                                      const char *fmt, ...) {
    d->failed = true;
    d->error.err = err;
    d->error.rpc = err == SWD_ETOOLARGE ? SWD_RPC_TOO_LARGE : SWD_RPC_INVALID_REQUEST;
    d->error.undecodable = undecodable;
    d->error.has_msgid = d->msgid_known;
    d->error.msgid = d->msgid;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error.message, sizeof(d->error.message), fmt, ap);
    va_end(ap);
    return err;
}

// Remembers the kind and msgid of a top-level array as its children pass by,
// so that even a frame refused half-way can be answered by msgid.
static void note_top_child(swd_decoder_t *d, const header_t *h) {
    if (d->depth != 1 || !d->top_array) {
        return;
    }
    if (d->top_items == 0) {
        d->kind_zero = h->is_uint && h->value == 0;
    } else if (d->top_items == 1 && d->kind_zero && h->is_uint) {
        d->msgid_known = true;
        d->msgid = h->value;
    }
    d->top_items++;
}

// One-byte scalars (fixints, nil, booleans) and short strings: most items
// of every message. Their whole size is in the first byte.
static bool small_item(uint8_t t, size_t *size) {
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        *size = 1;
        return true;
    }
    if (t >= 0xa0 && t <= 0xbf) {
        *size = 1 + (t & 0x1fu);
        return true;
    }
    return false;
}

// Advances the scanner over complete headers: 1 when the frame at `start`
// is complete (its length in `*flen`), 0 when more bytes are needed.
static int scan_frame(swd_decoder_t *d, size_t *flen) {
    for (;;) {
        while (d->depth > 0 && d->left[d->depth - 1] == 0) {
            d->depth--;
        }
        size_t have = d->end - d->start;
        if (d->started && d->depth == 0) {
            if (have < d->scan) {
                return 0; // the last item's payload is still arriving
            }
            *flen = d->scan;
            return 1;
        }
        if (d->scan >= have) {
            return 0;
        }
        const uint8_t *p = (const uint8_t *)d->buf + d->start + d->scan;
        size_t small;
        // Fast path: inside a container, past the two top-level children
        // note_top_child() looks at, and well within the limit.
        if (d->depth > 0 && (d->depth > 1 || d->top_items >= 2) && small_item(p[0], &small) &&
            d->scan + small <= d->max) {
            d->left[d->depth - 1]--;
            d->scan += small;
            continue;
        }
        header_t h;
        int r = parse_header(p, have - d->scan, &h);
        if (r == 0) {
            return 0;
        }
        if (r < 0) {
            return fail(d, SWD_EPROTO, true, "byte 0x%02x at offset %zu is not msgpack",
                        (unsigned)p[0], d->scan);
        }
        note_top_child(d, &h);
        // Every child takes at least one byte, so `items` counts as bytes.
        uint64_t least = (uint64_t)d->scan + h.size + h.payload + h.items;
        if (h.payload > d->max || h.items > d->max || least > d->max) {
            return fail(d, SWD_ETOOLARGE, false,
                        "message declares at least %llu bytes; the limit is %llu",
                        (unsigned long long)(least > h.payload ? least : h.payload),
                        (unsigned long long)d->max);
        }
        if (h.container && d->depth >= SWD_PROTO_MAX_DEPTH) {
            return fail(d, SWD_ETOODEEP, false, "message nests deeper than %d levels",
                        SWD_PROTO_MAX_DEPTH);
        }
        if (!d->started) {
            d->top_array = h.container && (p[0] & 0xf0u) != 0x80u && p[0] != 0xde && p[0] != 0xdf;
            d->started = true;
        }
        if (d->depth > 0) {
            d->left[d->depth - 1]--;
        }
        d->scan = (size_t)least - h.items;
        if (h.container) {
            d->left[d->depth++] = h.items;
        }
    }
}

static void reset_scan(swd_decoder_t *d) {
    d->scan = 0;
    d->depth = 0;
    d->started = false;
    d->top_array = false;
    d->top_items = 0;
    d->kind_zero = false;
    d->msgid_known = false;
    d->msgid = 0;
}

swd_decoder_t *swd_decoder_new(size_t max_message_bytes) {
    swd_decoder_t *d = swd_xcalloc(1, sizeof(*d));
    d->max = max_message_bytes ? max_message_bytes : SWD_PROTO_DEFAULT_MAX_MESSAGE;
    if (!msgpack_zone_init(&d->zone, ZONE_CHUNK)) {
        swd_out_of_memory(ZONE_CHUNK);
    }
    return d;
}

void swd_decoder_free(swd_decoder_t *d) {
    if (d == NULL) {
        return;
    }
    msgpack_zone_destroy(&d->zone);
    free(d->buf);
    free(d);
}

// Drops the last message's objects (their strings point into the buffer).
static void drop_message(swd_decoder_t *d) {
#if SWD_ASAN
    // Freed, not cleared, so that a pointer kept into the last message
    // faults under ASan instead of reading the next one's objects.
    msgpack_zone_destroy(&d->zone);
    if (!msgpack_zone_init(&d->zone, ZONE_CHUNK)) {
        swd_out_of_memory(ZONE_CHUNK);
    }
#else
    msgpack_zone_clear(&d->zone);
#endif
}

// Before a read: moves the unscanned bytes to the front, so the buffer never
// holds more than one partial frame plus a read. Once per read, not per
// message: a read of many small messages is not moved once for each.
static void compact(swd_decoder_t *d) {
    drop_message(d);
    if (d->start > 0) {
        memmove(d->buf, d->buf + d->start, d->end - d->start);
        d->end -= d->start;
        d->start = 0;
    }
    if (d->end == 0 && d->cap > SWD_DECODER_KEEP_BYTES) {
        // One big message must not pin its buffer for the connection's life.
        free(d->buf);
        d->buf = NULL;
        d->cap = 0;
    }
}

void swd_decoder_reserve(swd_decoder_t *d, size_t hint, char **buf, size_t *len) {
    compact(d);
    if (hint == 0) {
        hint = 1;
    }
    if (d->cap - d->end < hint) {
        size_t want = d->cap ? d->cap : 4096;
        while (want - d->end < hint) {
            want *= 2;
        }
        d->buf = swd_xrealloc(d->buf, want);
        d->cap = want;
    }
    *buf = d->buf + d->end;
    *len = d->cap - d->end;
}

void swd_decoder_commit(swd_decoder_t *d, size_t n) {
    d->end += n;
}

void swd_decoder_feed(swd_decoder_t *d, const void *data, size_t n) {
    char *buf;
    size_t len;
    swd_decoder_reserve(d, n, &buf, &len);
    if (n > 0) {
        memcpy(buf, data, n);
    }
    swd_decoder_commit(d, n);
}

size_t swd_decoder_pending(const swd_decoder_t *d) {
    return d->end - d->start;
}

size_t swd_decoder_capacity(const swd_decoder_t *d) {
    return d->cap;
}

static bool is_name(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN;
}

static void name_of(const msgpack_object *o, const char **s, size_t *len) {
    *s = o->via.str.ptr; // str and bin share the layout of their pointer and size
    *len = o->via.str.size;
}

// Checks a decoded frame against the msgpack-RPC shapes of DESIGN.md §2.
static int classify(swd_decoder_t *d, const msgpack_object *o, swd_msg_t *m) {
    memset(m, 0, sizeof(*m));
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0 ||
        o->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return fail(d, SWD_EPROTO, false, "message is not a msgpack-RPC array");
    }
    const msgpack_object *e = o->via.array.ptr;
    uint32_t n = o->via.array.size;
    uint64_t kind = e[0].via.u64;
    bool id_ok =
        n >= 2 && e[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[1].via.u64 <= UINT32_MAX;
    if ((kind == SWD_MSG_REQUEST || kind == SWD_MSG_RESPONSE) && n == 4 && id_ok) {
        m->kind = (swd_msg_kind_t)kind;
        m->msgid = e[1].via.u64;
        if (kind == SWD_MSG_RESPONSE) {
            m->error = &e[2];
            m->result = &e[3];
            return 1;
        }
        if (is_name(&e[2])) {
            name_of(&e[2], &m->method, &m->method_len);
            m->params = &e[3];
            return 1;
        }
        return fail(d, SWD_EPROTO, false, "request method must be a string");
    }
    if (kind == SWD_MSG_NOTIFY && n == 3 && is_name(&e[1])) {
        m->kind = SWD_MSG_NOTIFY;
        name_of(&e[1], &m->method, &m->method_len);
        m->params = &e[2];
        return 1;
    }
    return fail(d, SWD_EPROTO, false, "message kind %llu with %llu elements is not msgpack-RPC",
                (unsigned long long)kind, (unsigned long long)n);
}

int swd_decoder_next(swd_decoder_t *d, swd_msg_t *out, swd_proto_error_t *perr) {
    int r = 0;
    size_t flen = 0;
    if (!d->failed) {
        drop_message(d);
        r = scan_frame(d, &flen);
    }
    if (d->failed) {
        if (perr != NULL) {
            *perr = d->error;
        }
        return d->error.err;
    }
    if (r == 0) {
        return 0;
    }
    size_t off = 0;
    // msgpack_unpack() (marked obsolete in msgpack-c's header, still exported
    // and unchanged in 6.x) is the one call that unpacks into a zone the
    // caller keeps.
    msgpack_unpack_return ur = msgpack_unpack(d->buf + d->start, flen, &off, &d->zone, &d->obj);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != flen) {
        r = fail(d, SWD_EPROTO, true, "frame of %zu bytes does not decode (%d)", flen, (int)ur);
    } else {
        r = classify(d, &d->obj, out);
    }
    if (r < 0) {
        if (perr != NULL) {
            *perr = d->error;
        }
        return r;
    }
    d->start += flen;
    reset_scan(d);
    return 1;
}
