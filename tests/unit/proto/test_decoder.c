// The streaming decoder (proto/decoder.c): hand-computed frames decode to
// the expected messages however the bytes are split, and every kind of bad
// input gets exactly the refusal DESIGN.md §2.1 promises.
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/buf.h"
#include "proto/decoder.h"
#include "proto/errors.h"
#include "proto/params.h"
#include "tests/unit/leak_check.h"
#include "tests/unit/proto/vectors.h"

// ---------------------------------------------------------------------------
// Recording decoded messages

// A decoded message copied out of the decoder's memory (its pointers die at
// the next swd_decoder_* call). `body` is the params (requests,
// notifications) or error then result (responses), re-packed by msgpack-c.
typedef struct rec {
    swd_msg_kind_t kind;
    uint64_t msgid;
    bool has_method;
    char method[2048];
    size_t method_len;
    uint8_t body[1024 * 12];
    size_t body_len;
} rec_t;

// Everything a decoder produced from one stream: messages, then at most one
// error.
typedef struct seq {
    rec_t *recs;
    size_t n;
    size_t cap;
    int err; // 0, or the code swd_decoder_next() returned
    swd_proto_error_t perr;
    size_t err_at; // bytes fed when the error first appeared
} seq_t;

static void seq_init(seq_t *s) {
    memset(s, 0, sizeof(*s));
}

static void seq_free(seq_t *s) {
    free(s->recs);
    seq_init(s);
}

static void rec_from_msg(rec_t *r, const swd_msg_t *m) {
    memset(r, 0, sizeof(*r));
    r->kind = m->kind;
    r->msgid = m->msgid;
    if (m->method != NULL) {
        cr_assert_lt(m->method_len, sizeof(r->method));
        r->has_method = true;
        memcpy(r->method, m->method, m->method_len);
        r->method_len = m->method_len;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (m->kind == SWD_MSG_RESPONSE) {
        cr_assert_not_null(m->error);
        cr_assert_not_null(m->result);
        cr_assert_null(m->params);
        msgpack_pack_object(&pk, *m->error);
        msgpack_pack_object(&pk, *m->result);
    } else {
        cr_assert_not_null(m->params);
        cr_assert_null(m->error);
        cr_assert_null(m->result);
        msgpack_pack_object(&pk, *m->params);
    }
    size_t n = sb.size;
    if (n <= sizeof(r->body)) {
        memcpy(r->body, sb.data, n);
        r->body_len = n;
    }
    msgpack_sbuffer_destroy(&sb);
    cr_assert_leq(n, sizeof(r->body), "message body of %zu bytes too big for the test", n);
}

static void seq_push(seq_t *s, const swd_msg_t *m) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        rec_t *grown = realloc(s->recs, s->cap * sizeof(rec_t));
        cr_assert_not_null(grown);
        s->recs = grown;
    }
    rec_from_msg(&s->recs[s->n++], m);
}

static void assert_same_error(const swd_proto_error_t *a, const swd_proto_error_t *b) {
    cr_assert_eq(a->err, b->err);
    cr_assert_eq(a->rpc, b->rpc);
    cr_assert_eq(a->undecodable, b->undecodable);
    cr_assert_eq(a->has_msgid, b->has_msgid);
    cr_assert_eq(a->msgid, b->msgid);
    cr_assert_str_eq(a->message, b->message);
}

// Takes every message the decoder has ready. Once the stream has failed,
// each later call must give the very same error.
static void drain(swd_decoder_t *d, seq_t *s, size_t fed) {
    for (;;) {
        swd_msg_t m;
        swd_proto_error_t pe;
        memset(&pe, 0xa5, sizeof(pe));
        int r = swd_decoder_next(d, &m, &pe);
        if (s->err != 0) {
            cr_assert_eq(r, s->err, "after an error, next() returned %d, not %d", r, s->err);
            assert_same_error(&pe, &s->perr);
            return;
        }
        if (r == 0) {
            return;
        }
        if (r < 0) {
            cr_assert(r == SWD_EPROTO || r == SWD_ETOOLARGE || r == SWD_ETOODEEP,
                      "unexpected error code %d", r);
            cr_assert_eq(pe.err, r);
            cr_assert(pe.rpc == (r == SWD_ETOOLARGE ? SWD_RPC_TOO_LARGE : SWD_RPC_INVALID_REQUEST));
            cr_assert_neq(pe.message[0], '\0', "an error has a message");
            cr_assert_not_null(memchr(pe.message, '\0', sizeof(pe.message)));
            s->err = r;
            s->perr = pe;
            s->err_at = fed;
            // The same again, with and without somewhere to put the details.
            cr_assert_eq(swd_decoder_next(d, &m, NULL), r);
            continue;
        }
        cr_assert_eq(r, 1, "next() returned %d", r);
        seq_push(s, &m);
    }
}

static void assert_same_seq(const seq_t *a, const seq_t *b, const char *what) {
    cr_assert_eq(a->n, b->n, "%s: %zu messages, expected %zu", what, a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        const rec_t *x = &a->recs[i];
        const rec_t *y = &b->recs[i];
        cr_assert_eq(x->kind, y->kind, "%s: message %zu kind", what, i);
        cr_assert_eq(x->msgid, y->msgid, "%s: message %zu msgid", what, i);
        cr_assert_eq(x->has_method, y->has_method, "%s: message %zu method", what, i);
        cr_assert_eq(x->method_len, y->method_len, "%s: message %zu method", what, i);
        cr_assert_arr_eq(x->method, y->method, x->method_len, "%s: message %zu method", what, i);
        cr_assert_eq(x->body_len, y->body_len, "%s: message %zu body length", what, i);
        cr_assert_arr_eq(x->body, y->body, x->body_len, "%s: message %zu body", what, i);
    }
    cr_assert_eq(a->err, b->err, "%s: error %d, expected %d", what, a->err, b->err);
    if (a->err != 0) {
        assert_same_error(&a->perr, &b->perr);
    }
}

// ---------------------------------------------------------------------------
// Feeding strategies

// Hands `n` bytes over, through feed() or through reserve()+commit().
static void put(swd_decoder_t *d, const uint8_t *p, size_t n, bool use_reserve) {
    if (!use_reserve) {
        swd_decoder_feed(d, p, n);
        return;
    }
    char *buf = NULL;
    size_t len = 0;
    swd_decoder_reserve(d, n, &buf, &len);
    cr_assert_not_null(buf);
    cr_assert_geq(len, n == 0 ? 1 : n, "reserve(%zu) gave only %zu bytes", n, len);
    if (n > 0) {
        memcpy(buf, p, n);
    }
    swd_decoder_commit(d, n);
}

static void decode_all_at_once(const uint8_t *p, size_t n, size_t max, bool use_reserve,
                               seq_t *out) {
    swd_decoder_t *d = swd_decoder_new(max);
    seq_init(out);
    put(d, p, n, use_reserve);
    drain(d, out, n);
    // Nothing more arrives: still the same answer.
    drain(d, out, n);
    swd_decoder_free(d);
}

static void decode_bytewise(const uint8_t *p, size_t n, size_t max, seq_t *out) {
    swd_decoder_t *d = swd_decoder_new(max);
    seq_init(out);
    for (size_t i = 0; i < n; i++) {
        put(d, p + i, 1, (i & 1u) != 0);
        drain(d, out, i + 1);
    }
    swd_decoder_free(d);
}

// Random chunks of 1..max_chunk bytes (sometimes empty ones), through feed()
// or reserve()+commit() at random, draining after each.
static void decode_random_splits(const uint8_t *p, size_t n, size_t max, tv_lcg_t *g,
                                 uint32_t max_chunk, seq_t *out) {
    swd_decoder_t *d = swd_decoder_new(max);
    seq_init(out);
    size_t off = 0;
    while (off < n) {
        size_t chunk = tv_lcg_below(g, 8) == 0 ? 0 : 1 + tv_lcg_below(g, max_chunk);
        if (chunk > n - off) {
            chunk = n - off;
        }
        put(d, p + off, chunk, (tv_lcg_next(g) & 1u) != 0);
        off += chunk;
        if (tv_lcg_below(g, 4) != 0 || off == n) {
            drain(d, out, off);
        }
    }
    drain(d, out, n);
    swd_decoder_free(d);
}

// ---------------------------------------------------------------------------
// Expectations for the hand-computed vectors

static void assert_matches_vector(const rec_t *r, const tv_vector_t *v) {
    cr_assert_eq(r->kind, v->kind, "%s: kind", v->name);
    if (v->kind != SWD_MSG_NOTIFY) {
        cr_assert_eq(r->msgid, v->msgid, "%s: msgid %llu", v->name, (unsigned long long)r->msgid);
    }
    if (v->method != NULL) {
        cr_assert(r->has_method, "%s: method", v->name);
        cr_assert_eq(r->method_len, strlen(v->method), "%s: method length", v->name);
        cr_assert_arr_eq(r->method, v->method, r->method_len, "%s: method", v->name);
    } else {
        cr_assert_not(r->has_method, "%s: a response has no method", v->name);
    }
    // Params, or error then result: the vector's own tail, byte for byte.
    size_t want = v->len - v->body_off;
    cr_assert_eq(r->body_len, want, "%s: body of %zu bytes, expected %zu", v->name, r->body_len,
                 want);
    cr_assert_arr_eq(r->body, v->bytes + v->body_off, want, "%s: body", v->name);
}

// A fresh decoder fed `v` alone, whose first message `m` must be ready. `m`
// points into the decoder: free the decoder only when done with `m`.
static swd_decoder_t *decode_one(const tv_vector_t *v, swd_msg_t *m) {
    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, v->bytes, v->len);
    cr_assert_eq(swd_decoder_next(d, m, NULL), 1, "%s: no message", v->name);
    return d;
}

// All vectors back to back, `rounds` times over; the caller frees.
static uint8_t *concat_vectors(size_t rounds, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < tv_all_count; i++) {
        total += tv_all[i]->len;
    }
    if (total == 0 || rounds == 0) {
        abort(); // a broken vectors.c, not a decoder fault
    }
    uint8_t *p = malloc(total * rounds);
    cr_assert_not_null(p);
    size_t off = 0;
    for (size_t k = 0; k < rounds; k++) {
        for (size_t i = 0; i < tv_all_count; i++) {
            memcpy(p + off, tv_all[i]->bytes, tv_all[i]->len);
            off += tv_all[i]->len;
        }
    }
    *len = off;
    return p;
}

// ---------------------------------------------------------------------------
// Well-formed input

Test(decoder, each_vector_decodes) {
    for (size_t i = 0; i < tv_all_count; i++) {
        const tv_vector_t *v = tv_all[i];
        swd_decoder_t *d = swd_decoder_new(0);
        seq_t s;
        seq_init(&s);
        swd_decoder_feed(d, v->bytes, v->len);
        drain(d, &s, v->len);
        cr_assert_eq(s.err, 0, "%s: error %d (%s)", v->name, s.err, s.perr.message);
        cr_assert_eq(s.n, 1, "%s: %zu messages", v->name, s.n);
        assert_matches_vector(&s.recs[0], v);
        cr_assert_eq(swd_decoder_pending(d), 0);
        swd_msg_t m;
        cr_assert_eq(swd_decoder_next(d, &m, NULL), 0, "%s: only one message", v->name);
        seq_free(&s);
        swd_decoder_free(d);
    }
    ASSERT_NO_LEAKS();
}

Test(decoder, request_fields) {
    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, tv_request.bytes, tv_request.len);
    swd_msg_t m;
    swd_proto_error_t pe;
    cr_assert_eq(swd_decoder_next(d, &m, &pe), 1);
    cr_assert_eq(m.kind, SWD_MSG_REQUEST);
    cr_assert_eq(m.msgid, 7);
    cr_assert_eq(m.method_len, 8);
    cr_assert_arr_eq(m.method, "task.get", 8);
    cr_assert_null(m.error);
    cr_assert_null(m.result);
    cr_assert_eq(m.params->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(m.params->via.array.size, 1);
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, m.params), 0);
    const char *s = NULL;
    size_t n = 0;
    cr_assert_eq(swd_params_str(&p, "task_id", true, &s, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_arr_eq(s, "t1", 2);
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

Test(decoder, request_with_bin_method) {
    swd_msg_t m;
    swd_decoder_t *d = decode_one(&tv_request_bin, &m);
    cr_assert_eq(m.kind, SWD_MSG_REQUEST);
    cr_assert_eq(m.msgid, 8);
    cr_assert_eq(m.method_len, 8);
    cr_assert_arr_eq(m.method, "task.get", 8);
    cr_assert_eq(m.params->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(m.params->via.array.size, 0);
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

Test(decoder, result_fields) {
    swd_msg_t m;
    swd_decoder_t *d = decode_one(&tv_result, &m);
    cr_assert_eq(m.kind, SWD_MSG_RESPONSE);
    cr_assert_eq(m.msgid, 7);
    cr_assert_null(m.method);
    cr_assert_null(m.params);
    cr_assert_eq(m.error->type, MSGPACK_OBJECT_NIL);
    cr_assert_eq(m.result->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(m.result->via.map.size, 2);
    const msgpack_object *state = swd_map_find(m.result, "state");
    cr_assert_not_null(state);
    cr_assert(swd_obj_streq(state, "queued"));
    cr_assert(swd_obj_streq(swd_map_find(m.result, "task_id"), "t1"));
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

Test(decoder, error_fields) {
    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, tv_error.bytes, tv_error.len);
    swd_decoder_feed(d, tv_error_data.bytes, tv_error_data.len);
    swd_msg_t m;
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
    cr_assert_eq(m.kind, SWD_MSG_RESPONSE);
    cr_assert_eq(m.msgid, 9);
    cr_assert_eq(m.error->type, MSGPACK_OBJECT_MAP);
    cr_assert(swd_obj_streq(swd_map_find(m.error, "code"), "not_found"));
    cr_assert(swd_obj_streq(swd_map_find(m.error, "message"), "no task t9"));
    cr_assert_null(swd_map_find(m.error, "data"));
    cr_assert_eq(m.result->type, MSGPACK_OBJECT_NIL);

    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
    cr_assert_eq(m.msgid, 10);
    cr_assert(swd_obj_streq(swd_map_find(m.error, "code"), "invalid_params"));
    const msgpack_object *data = swd_map_find(m.error, "data");
    cr_assert_not_null(data);
    const msgpack_object *index = swd_map_find(data, "index");
    cr_assert_not_null(index);
    cr_assert_eq(index->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(index->via.u64, 2);
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

Test(decoder, notify_fields) {
    swd_msg_t m;
    swd_decoder_t *d = decode_one(&tv_notify, &m);
    cr_assert_eq(m.kind, SWD_MSG_NOTIFY);
    cr_assert_eq(m.method_len, 5);
    cr_assert_arr_eq(m.method, "event", 5);
    cr_assert_null(m.error);
    cr_assert_null(m.result);
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, m.params), 0);
    uint64_t ts = 0;
    cr_assert_eq(swd_params_uint(&p, "ts", true, &ts), 0);
    cr_assert_eq(ts, UINT64_C(1700000000000));
    char topic[16];
    cr_assert_eq(swd_params_strbuf(&p, "topic", true, topic, sizeof(topic)), 0);
    cr_assert_str_eq(topic, "task");
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

Test(decoder, msgid_widths) {
    const tv_vector_t *v[] = {&tv_result_msgid8, &tv_request_msgid16, &tv_result_msgid32,
                              &tv_request_msgid_max, &tv_request_msgid_wide};
    const uint64_t want[] = {200, 300, 70000, UINT32_MAX, 7};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        swd_msg_t m;
        swd_decoder_t *d = decode_one(v[i], &m);
        cr_assert_eq(m.msgid, want[i], "%s: msgid %llu", v[i]->name, (unsigned long long)m.msgid);
        swd_decoder_free(d);
    }
    ASSERT_NO_LEAKS();
}

// Every truncation of a frame asks for more bytes, with no error, and the
// rest completes it.
Test(decoder, truncated_frames_wait) {
    for (size_t i = 0; i < tv_all_count; i++) {
        const tv_vector_t *v = tv_all[i];
        for (size_t cut = 0; cut < v->len; cut++) {
            swd_decoder_t *d = swd_decoder_new(0);
            swd_decoder_feed(d, v->bytes, cut);
            swd_msg_t m;
            swd_proto_error_t pe;
            cr_assert_eq(swd_decoder_next(d, &m, &pe), 0, "%s cut at %zu", v->name, cut);
            cr_assert_eq(swd_decoder_next(d, &m, &pe), 0, "%s cut at %zu", v->name, cut);
            cr_assert_eq(swd_decoder_pending(d), cut);
            swd_decoder_feed(d, v->bytes + cut, v->len - cut);
            cr_assert_eq(swd_decoder_next(d, &m, &pe), 1, "%s cut at %zu", v->name, cut);
            cr_assert_eq(m.kind, v->kind);
            cr_assert_eq(swd_decoder_pending(d), 0);
            swd_decoder_free(d);
        }
    }
    ASSERT_NO_LEAKS();
}

Test(decoder, pending_counts_the_partial_frame) {
    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, tv_request.bytes, tv_request.len);
    swd_decoder_feed(d, tv_result.bytes, 10);
    cr_assert_eq(swd_decoder_pending(d), tv_request.len + 10);
    swd_msg_t m;
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
    cr_assert_eq(swd_decoder_pending(d), 10);
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 0);
    cr_assert_eq(swd_decoder_pending(d), 10);
    swd_decoder_free(d);
    swd_decoder_free(NULL);
    ASSERT_NO_LEAKS();
}

// A request whose one parameter is a string of `n` bytes.
static void big_request(swd_buf_t *b, size_t n) {
    char *s = calloc(1, n);
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, swd_buf_write_cb);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, 0);
    msgpack_pack_uint8(&pk, 1);
    msgpack_pack_str_with_body(&pk, "m", 1);
    msgpack_pack_array(&pk, 1);
    msgpack_pack_str_with_body(&pk, s, n);
    free(s);
}

// A connection that once sent a big message does not keep its memory: the
// buffer goes once nothing is pending, but never under a partial frame.
Test(decoder, a_big_message_does_not_pin_its_buffer) {
    swd_decoder_t *d = swd_decoder_new(0);
    swd_buf_t b;
    swd_buf_init(&b);
    big_request(&b, 3u << 20);
    swd_decoder_feed(d, b.data, b.len - 1);
    char *p;
    size_t n;
    swd_decoder_reserve(d, 65536, &p, &n); // the next read, mid-frame
    cr_assert_geq(swd_decoder_capacity(d), b.len, "a partial frame must stay buffered");
    memcpy(p, b.data + b.len - 1, 1);
    swd_decoder_commit(d, 1);
    swd_msg_t m;
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
    cr_assert_eq(m.params->via.array.ptr[0].via.str.size, 3u << 20);
    swd_decoder_reserve(d, 65536, &p, &n); // the read after it
    cr_assert_leq(swd_decoder_capacity(d), SWD_DECODER_KEEP_BYTES, "capacity %zu kept",
                  swd_decoder_capacity(d));
    swd_decoder_feed(d, tv_request.bytes, tv_request.len);
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1, "decodes on after the release");
    swd_buf_close(&b);
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

// The same stream, split every way, gives the same messages: those of the
// vectors, in order.
Test(decoder, splits_give_identical_sequences) {
    const size_t rounds = 4;
    size_t len;
    uint8_t *stream = concat_vectors(rounds, &len);

    seq_t whole;
    decode_all_at_once(stream, len, 0, false, &whole);
    cr_assert_eq(whole.err, 0, "error %d: %s", whole.err, whole.perr.message);
    cr_assert_eq(whole.n, rounds * tv_all_count);
    for (size_t i = 0; i < whole.n; i++) {
        assert_matches_vector(&whole.recs[i], tv_all[i % tv_all_count]);
    }

    seq_t other;
    decode_all_at_once(stream, len, 0, true, &other);
    assert_same_seq(&other, &whole, "all at once via reserve/commit");
    seq_free(&other);

    decode_bytewise(stream, len, 0, &other);
    assert_same_seq(&other, &whole, "one byte at a time");
    seq_free(&other);

    tv_lcg_t g;
    tv_lcg_seed(&g, 42);
    for (int round = 0; round < 300; round++) {
        uint32_t max_chunk = 1 + tv_lcg_below(&g, round % 3 == 0 ? 8 : 200);
        decode_random_splits(stream, len, 0, &g, max_chunk, &other);
        assert_same_seq(&other, &whole, "random splits");
        seq_free(&other);
    }
    seq_free(&whole);
    free(stream);
    ASSERT_NO_LEAKS();
}

// A frame much larger than the decoder's first buffer, so reserve() has to
// grow it and compaction has to carry a partial frame along.
Test(decoder, large_frame_in_random_splits) {
    const size_t n = 10000; // str16 of 0x2710 bytes
    static const uint8_t head[] = {
        0x94, 0x00, 0x07, // request, msgid 7
        0xa1, 0x6d,       // "m"
        0x91,             // params: fixarray, 1 element
        0xda, 0x27, 0x10, // str16, 10000 bytes
    };
    size_t len = 3 * (sizeof(head) + n);
    uint8_t *stream = malloc(len);
    cr_assert_not_null(stream);
    for (size_t k = 0; k < 3; k++) {
        uint8_t *f = stream + k * (sizeof(head) + n);
        memcpy(f, head, sizeof(head));
        f[2] = (uint8_t)(7 + k);
        memset(f + sizeof(head), 'a' + (int)k, n);
    }
    seq_t whole;
    decode_all_at_once(stream, len, 0, false, &whole);
    cr_assert_eq(whole.err, 0);
    cr_assert_eq(whole.n, 3);
    for (size_t k = 0; k < 3; k++) {
        cr_assert_eq(whole.recs[k].msgid, 7 + k);
        // re-packed params: 91 da 27 10 then the bytes
        cr_assert_eq(whole.recs[k].body_len, 4 + n);
        cr_assert_eq(whole.recs[k].body[4 + n - 1], (uint8_t)('a' + k));
    }
    tv_lcg_t g;
    tv_lcg_seed(&g, 7);
    for (int round = 0; round < 50; round++) {
        seq_t other;
        decode_random_splits(stream, len, 0, &g, 1 + tv_lcg_below(&g, 6000), &other);
        assert_same_seq(&other, &whole, "random splits of large frames");
        seq_free(&other);
    }
    seq_free(&whole);
    free(stream);
    ASSERT_NO_LEAKS();
}

Test(decoder, reserve_gives_room_to_read_into) {
    swd_decoder_t *d = swd_decoder_new(0);
    char *buf = NULL;
    size_t len = 0;
    swd_decoder_reserve(d, 0, &buf, &len);
    cr_assert_not_null(buf);
    cr_assert_geq(len, 1);
    swd_decoder_commit(d, 0);
    swd_decoder_reserve(d, tv_request.len, &buf, &len);
    cr_assert_geq(len, tv_request.len);
    // Write part of the frame, then the rest through a second reservation.
    memcpy(buf, tv_request.bytes, 5);
    swd_decoder_commit(d, 5);
    swd_msg_t m;
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 0);
    swd_decoder_reserve(d, 1, &buf, &len);
    cr_assert_geq(len, tv_request.len - 5);
    memcpy(buf, tv_request.bytes + 5, tv_request.len - 5);
    swd_decoder_commit(d, tv_request.len - 5);
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
    cr_assert_eq(m.msgid, 7);
    cr_assert_arr_eq(m.method, "task.get", 8);
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

// Every msgpack type in params (the scanner must size each one exactly as
// msgpack-c does, or the next frame would be misread).
static const uint8_t all_types_frame[] = {
    0x94, 0x00, 0x07, 0xa1, 0x6d,                               // [0, 7, "m",
    0xdc, 0x00, 0x23,                                           //  array16 of 35:
    0xc0,                                                       //  0 nil
    0xc3,                                                       //  1 true
    0xc2,                                                       //  2 false
    0xff,                                                       //  3 -1 (negative fixint)
    0xd0, 0x9c,                                                 //  4 int8 -100
    0xd1, 0xfc, 0x18,                                           //  5 int16 -1000
    0xd2, 0xff, 0xfe, 0x79, 0x60,                               //  6 int32 -100000
    0xd3, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x00,       //  7 int64 -2^40
    0xcc, 0xff,                                                 //  8 uint8 255
    0xcd, 0xff, 0xff,                                           //  9 uint16 65535
    0xce, 0xff, 0xff, 0xff, 0xff,                               // 10 uint32
    0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,       // 11 uint64 max
    0xca, 0x3f, 0xc0, 0x00, 0x00,                               // 12 float32 1.5
    0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,       // 13 float64 1.5
    0xd4, 0x01, 0xaa,                                           // 14 fixext1 type 1
    0xd5, 0x02, 0xaa, 0xbb,                                     // 15 fixext2 type 2
    0xd6, 0x03, 0x01, 0x02, 0x03, 0x04,                         // 16 fixext4 type 3
    0xd7, 0x04, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // 17 fixext8 type 4
    0xd8, 0x05, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // 18 fixext16 type 5
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,             //    (fixext16 data)
    0xc7, 0x03, 0x06, 0x61, 0x62, 0x63,                         // 19 ext8 3 bytes type 6
    0xc8, 0x00, 0x02, 0x07, 0x61, 0x62,                         // 20 ext16 2 bytes type 7
    0xc9, 0x00, 0x00, 0x00, 0x01, 0x08, 0x61,                   // 21 ext32 1 byte type 8
    0xd9, 0x03, 0x61, 0x62, 0x63,                               // 22 str8 "abc"
    0xda, 0x00, 0x02, 0x61, 0x62,                               // 23 str16 "ab"
    0xdb, 0x00, 0x00, 0x00, 0x01, 0x61,                         // 24 str32 "a"
    0xc4, 0x01, 0x61,                                           // 25 bin8
    0xc5, 0x00, 0x01, 0x61,                                     // 26 bin16
    0xc6, 0x00, 0x00, 0x00, 0x01, 0x61,                         // 27 bin32
    0xdc, 0x00, 0x01, 0x01,                                     // 28 array16 [1]
    0xdd, 0x00, 0x00, 0x00, 0x01, 0x01,                         // 29 array32 [1]
    0xde, 0x00, 0x01, 0xa1, 0x61, 0x01,                         // 30 map16 {"a": 1}
    0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 0x61, 0x01,             // 31 map32 {"a": 1}
    0x90,                                                       // 32 []
    0x80,                                                       // 33 {}
    0xe0,                                                       // 34 -32 (negative fixint)
};

Test(decoder, every_msgpack_type_is_sized_right) {
    size_t len = sizeof(all_types_frame) + tv_request.len;
    uint8_t *stream = malloc(len);
    cr_assert_not_null(stream);
    memcpy(stream, all_types_frame, sizeof(all_types_frame));
    memcpy(stream + sizeof(all_types_frame), tv_request.bytes, tv_request.len);

    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, stream, len);
    swd_msg_t m;
    swd_proto_error_t pe;
    int r = swd_decoder_next(d, &m, &pe);
    cr_assert_eq(r, 1, "returned %d: %s", r, r < 0 ? pe.message : "");
    cr_assert_eq(m.params->type, MSGPACK_OBJECT_ARRAY);
    cr_assert_eq(m.params->via.array.size, 35);
    const msgpack_object *a = m.params->via.array.ptr;
    cr_assert_eq(a[0].type, MSGPACK_OBJECT_NIL);
    cr_assert_eq(a[1].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert(a[1].via.boolean);
    cr_assert_eq(a[3].via.i64, -1);
    cr_assert_eq(a[4].via.i64, -100);
    cr_assert_eq(a[5].via.i64, -1000);
    cr_assert_eq(a[6].via.i64, -100000);
    cr_assert_eq(a[7].via.i64, -(INT64_C(1) << 40));
    cr_assert_eq(a[10].via.u64, UINT32_MAX);
    cr_assert_eq(a[11].via.u64, UINT64_MAX);
    cr_assert_eq(a[12].type, MSGPACK_OBJECT_FLOAT32);
    cr_assert_eq(a[13].type, MSGPACK_OBJECT_FLOAT64);
    cr_assert(a[13].via.f64 == 1.5);
    cr_assert_eq(a[18].type, MSGPACK_OBJECT_EXT);
    cr_assert_eq(a[18].via.ext.type, 5);
    cr_assert_eq(a[18].via.ext.size, 16);
    cr_assert_eq(a[21].via.ext.type, 8);
    cr_assert_eq(a[21].via.ext.size, 1);
    cr_assert_eq(a[24].type, MSGPACK_OBJECT_STR);
    cr_assert_eq(a[27].type, MSGPACK_OBJECT_BIN);
    cr_assert_eq(a[31].type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(a[34].via.i64, -32);
    // The frame after it is read from the right place.
    r = swd_decoder_next(d, &m, &pe);
    cr_assert_eq(r, 1, "returned %d: %s", r, r < 0 ? pe.message : "");
    cr_assert_eq(m.msgid, 7);
    cr_assert_arr_eq(m.method, "task.get", 8);
    swd_decoder_free(d);

    seq_t whole;
    seq_t other;
    decode_all_at_once(stream, len, 0, false, &whole);
    decode_bytewise(stream, len, 0, &other);
    assert_same_seq(&other, &whole, "all types, one byte at a time");
    seq_free(&other);
    seq_free(&whole);
    free(stream);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Malformed input

typedef struct bad_case {
    const char *name;
    const uint8_t *bytes;
    size_t len;
    size_t max; // decoder limit; 0 for the default
    size_t at;  // bytes after which the error appears; 0 for `len`
    int err;
    bool undecodable;
    bool has_msgid;
    uint64_t msgid;
} bad_case_t;

// Checks a malformed stream all at once and one byte at a time: no error
// before `at` bytes, the expected one right there, and then the same one
// for good, even when valid frames follow.
static void check_bad(const bad_case_t *c) {
    size_t at = c->at ? c->at : c->len;
    seq_t whole;
    decode_all_at_once(c->bytes, c->len, c->max, false, &whole);
    cr_assert_eq(whole.err, c->err, "%s: error %d, expected %d (%s)", c->name, whole.err, c->err,
                 whole.perr.message);
    cr_assert_eq(whole.perr.err, c->err, "%s", c->name);
    cr_assert_eq(whole.perr.rpc,
                 c->err == SWD_ETOOLARGE ? SWD_RPC_TOO_LARGE : SWD_RPC_INVALID_REQUEST, "%s",
                 c->name);
    cr_assert_eq(whole.perr.undecodable, c->undecodable, "%s: undecodable", c->name);
    cr_assert_eq(whole.perr.has_msgid, c->has_msgid, "%s: has_msgid", c->name);
    if (c->has_msgid) {
        cr_assert_eq(whole.perr.msgid, c->msgid, "%s: msgid %llu", c->name,
                     (unsigned long long)whole.perr.msgid);
    }

    seq_t bytewise;
    decode_bytewise(c->bytes, c->len, c->max, &bytewise);
    cr_assert_eq(bytewise.err_at, at, "%s: error after %zu bytes, expected %zu", c->name,
                 bytewise.err_at, at);
    // Where the frame was refused does not depend on how it arrived.
    assert_same_seq(&bytewise, &whole, c->name);

    // Sticky: more input, even valid frames, changes nothing.
    swd_decoder_t *d = swd_decoder_new(c->max);
    seq_t s;
    seq_init(&s);
    swd_decoder_feed(d, c->bytes, c->len);
    drain(d, &s, c->len);
    for (size_t i = 0; i < tv_all_count; i++) {
        swd_decoder_feed(d, tv_all[i]->bytes, tv_all[i]->len);
        drain(d, &s, c->len);
    }
    cr_assert_eq(s.n, 0, "%s: a message after the error", c->name);
    cr_assert_eq(s.err, c->err, "%s", c->name);
    swd_msg_t m;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(swd_decoder_next(d, &m, NULL), c->err, "%s", c->name);
    }
    swd_decoder_free(d);
    seq_free(&s);
    seq_free(&bytewise);
    seq_free(&whole);
}

#define BAD(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

Test(decoder, wrong_array_length) {
    const bad_case_t cases[] = {
        // [0, 7, "m"]: a request missing params still has a readable msgid
        {"request of 3", BAD(0x93, 0x00, 0x07, 0xa1, 0x6d), 0, 0, SWD_EPROTO, false, true, 7},
        // [0, 7, "m", [], nil]
        {"request of 5", BAD(0x95, 0x00, 0x07, 0xa1, 0x6d, 0x90, 0xc0), 0, 0, SWD_EPROTO, false,
         true, 7},
        // [1, 7, nil]
        {"response of 3", BAD(0x93, 0x01, 0x07, 0xc0), 0, 0, SWD_EPROTO, false, false, 0},
        // [2, "m", [], nil]
        {"notification of 4", BAD(0x94, 0x02, 0xa1, 0x6d, 0x90, 0xc0), 0, 0, SWD_EPROTO, false,
         false, 0},
        // [2, "m"]
        {"notification of 2", BAD(0x92, 0x02, 0xa1, 0x6d), 0, 0, SWD_EPROTO, false, false, 0},
        // []
        {"empty array", BAD(0x90), 0, 0, SWD_EPROTO, false, false, 0},
        // [0]
        {"kind alone", BAD(0x91, 0x00), 0, 0, SWD_EPROTO, false, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

Test(decoder, wrong_kind) {
    const bad_case_t cases[] = {
        // [3, 7, "m", []]
        {"kind 3", BAD(0x94, 0x03, 0x07, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false, false, 0},
        // [-1, 7, "m", []]
        {"kind -1", BAD(0x94, 0xff, 0x07, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false, false, 0},
        // [int8 -128, 7, "m", []]
        {"kind -128", BAD(0x94, 0xd0, 0x80, 0x07, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false, false,
         0},
        // ["0", 7, "m", []]
        {"kind as string", BAD(0x94, 0xa1, 0x30, 0x07, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false,
         false, 0},
        // [nil, 7, "m", []]
        {"kind nil", BAD(0x94, 0xc0, 0x07, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false, false, 0},
        // [uint64 2^32, 7, "m", []]
        {"kind huge",
         BAD(0x94, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x07, 0xa1, 0x6d, 0x90), 0,
         0, SWD_EPROTO, false, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

Test(decoder, bad_msgid) {
    const bad_case_t cases[] = {
        // [0, "x", "m", []]
        {"msgid string", BAD(0x94, 0x00, 0xa1, 0x78, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false,
         false, 0},
        // [0, -1, "m", []]
        {"msgid negative", BAD(0x94, 0x00, 0xff, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false, false,
         0},
        // [0, 7.0, "m", []]
        {"msgid float",
         BAD(0x94, 0x00, 0xcb, 0x40, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa1, 0x6d, 0x90), 0,
         0, SWD_EPROTO, false, false, 0},
        // [0, nil, "m", []]
        {"msgid nil", BAD(0x94, 0x00, 0xc0, 0xa1, 0x6d, 0x90), 0, 0, SWD_EPROTO, false, false, 0},
        // [1, "x", nil, nil]
        {"response msgid string", BAD(0x94, 0x01, 0xa1, 0x78, 0xc0, 0xc0), 0, 0, SWD_EPROTO, false,
         false, 0},
        // [0, 2^32, "ping", []]: past UINT32_MAX is not a msgpack-RPC msgid,
        // but it is an unsigned integer, so DESIGN.md §2.1 counts it readable.
        {"msgid 2^32",
         BAD(0x94, 0x00, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xa4, 0x70, 0x69,
             0x6e, 0x67, 0x90),
         0, 0, SWD_EPROTO, false, true, UINT64_C(0x100000000)},
        // [1, 2^32, nil, nil]
        {"response msgid 2^32",
         BAD(0x94, 0x01, 0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xc0), 0, 0,
         SWD_EPROTO, false, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

Test(decoder, method_not_a_string) {
    const bad_case_t cases[] = {
        // [0, 7, 5, []]
        {"method int", BAD(0x94, 0x00, 0x07, 0x05, 0x90), 0, 0, SWD_EPROTO, false, true, 7},
        // [0, 7, nil, []]
        {"method nil", BAD(0x94, 0x00, 0x07, 0xc0, 0x90), 0, 0, SWD_EPROTO, false, true, 7},
        // [0, 300, ["m"], []]
        {"method array", BAD(0x94, 0x00, 0xcd, 0x01, 0x2c, 0x91, 0xa1, 0x6d, 0x90), 0, 0,
         SWD_EPROTO, false, true, 300},
        // [2, 5, []]
        {"notification method int", BAD(0x93, 0x02, 0x05, 0x90), 0, 0, SWD_EPROTO, false, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

Test(decoder, top_level_not_an_array) {
    const bad_case_t cases[] = {
        {"integer", BAD(0x05), 0, 0, SWD_EPROTO, false, false, 0},
        {"nil", BAD(0xc0), 0, 0, SWD_EPROTO, false, false, 0},
        {"string", BAD(0xa2, 0x68, 0x69), 0, 0, SWD_EPROTO, false, false, 0},
        // {"a": 1}
        {"map", BAD(0x81, 0xa1, 0x61, 0x01), 0, 0, SWD_EPROTO, false, false, 0},
        // {0: 7, 1: "m"}: a map whose keys look like a request's
        {"map like a request", BAD(0x82, 0x00, 0x07, 0x01, 0xa1, 0x6d), 0, 0, SWD_EPROTO, false,
         false, 0},
        // map16 {0: 7}
        {"map16", BAD(0xde, 0x00, 0x01, 0x00, 0x07), 0, 0, SWD_EPROTO, false, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

// params that is not an array decodes: the params helper reports it, so the
// connection can answer invalid_params and stay open.
Test(decoder, params_not_an_array_decodes) {
    // [0, 7, "m", 5]
    static const uint8_t frame[] = {0x94, 0x00, 0x07, 0xa1, 0x6d, 0x05};
    // [2, "m", {"a": 1}]
    static const uint8_t notify[] = {0x93, 0x02, 0xa1, 0x6d, 0x81, 0xa1, 0x61, 0x01};
    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, frame, sizeof(frame));
    swd_decoder_feed(d, notify, sizeof(notify));
    swd_msg_t m;
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
    cr_assert_eq(m.kind, SWD_MSG_REQUEST);
    cr_assert_eq(m.msgid, 7);
    cr_assert_eq(m.params->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, m.params), SWD_EPARAMS);
    cr_assert_not_null(strstr(p.error, "params"), "error: %s", p.error);

    cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
    cr_assert_eq(m.kind, SWD_MSG_NOTIFY);
    cr_assert_eq(m.params->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(swd_params_open(&p, m.params), SWD_EPARAMS);
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 0);
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

Test(decoder, undecodable_byte) {
    const bad_case_t cases[] = {
        {"0xc1 alone", BAD(0xc1), 0, 0, SWD_EPROTO, true, false, 0},
        // [0xc1 ...: refused at the byte, before the frame could end
        {"0xc1 as kind", BAD(0x94, 0xc1), 0, 0, SWD_EPROTO, true, false, 0},
        // [1, 7, nil, 0xc1
        {"0xc1 in a response", BAD(0x94, 0x01, 0x07, 0xc0, 0xc1), 0, 0, SWD_EPROTO, true, false, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }

    // After a good frame, the good frame still comes out first.
    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, tv_request.bytes, tv_request.len);
    swd_decoder_feed(d, (const uint8_t[]){0xc1}, 1);
    swd_msg_t m;
    swd_proto_error_t pe;
    cr_assert_eq(swd_decoder_next(d, &m, &pe), 1);
    cr_assert_eq(m.msgid, 7);
    cr_assert_eq(swd_decoder_next(d, &m, &pe), SWD_EPROTO);
    cr_assert(pe.undecodable);
    cr_assert_not(pe.has_msgid);
    swd_decoder_free(d);
    ASSERT_NO_LEAKS();
}

// Declared lengths past the limit are refused from the header alone: each
// stream below ends with the offending header, so no payload is needed.
Test(decoder, too_large_from_header) {
    const bad_case_t cases[] = {
        // [0, 7, str32 0xffffffff
        {"str32 method", BAD(0x94, 0x00, 0x07, 0xdb, 0xff, 0xff, 0xff, 0xff), 1024, 0,
         SWD_ETOOLARGE, false, true, 7},
        // [0, 7, bin32 0x00000401 (1025 > 1024)
        {"bin32 method", BAD(0x94, 0x00, 0x07, 0xc6, 0x00, 0x00, 0x04, 0x01), 1024, 0,
         SWD_ETOOLARGE, false, true, 7},
        // [0, 9, "ping", array32 of 0x00000800 (2048 items)
        {"array32 params",
         BAD(0x94, 0x00, 0x09, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0xdd, 0x00, 0x00, 0x08, 0x00), 1024, 0,
         SWD_ETOOLARGE, false, true, 9},
        // [0, 9, "ping", [map32 of 0x00000400 entries (2048 items)
        {"map32 in params",
         BAD(0x94, 0x00, 0x09, 0xa4, 0x70, 0x69, 0x6e, 0x67, 0x91, 0xdf, 0x00, 0x00, 0x04, 0x00),
         1024, 0, SWD_ETOOLARGE, false, true, 9},
        // [0, 300, "m", [{"k": str32 0x80000000
        {"str32 deep in params",
         BAD(0x94, 0x00, 0xcd, 0x01, 0x2c, 0xa1, 0x6d, 0x91, 0x81, 0xa1, 0x6b, 0xdb, 0x80, 0x00,
             0x00, 0x00),
         1024, 0, SWD_ETOOLARGE, false, true, 300},
        // array32 of 0xffffffff as the frame itself
        {"array32 top", BAD(0xdd, 0xff, 0xff, 0xff, 0xff), 1024, 0, SWD_ETOOLARGE, false, false, 0},
        // map32 of 0xffffffff entries as the frame itself
        {"map32 top", BAD(0xdf, 0xff, 0xff, 0xff, 0xff), 1024, 0, SWD_ETOOLARGE, false, false, 0},
        // [1, 7, nil, str32 0x01000000: a response's msgid is not answered
        {"str32 response", BAD(0x94, 0x01, 0x07, 0xc0, 0xdb, 0x01, 0x00, 0x00, 0x00), 1024, 0,
         SWD_ETOOLARGE, false, false, 0},
        // [0, 7, "m", ext32 0x00001000
        {"ext32 params", BAD(0x94, 0x00, 0x07, 0xa1, 0x6d, 0xc9, 0x00, 0x00, 0x10, 0x00), 1024, 0,
         SWD_ETOOLARGE, false, true, 7},
        // The default limit (16 MiB): str32 of 16 MiB + 1
        {"str32 past default", BAD(0x94, 0x00, 0x07, 0xdb, 0x01, 0x00, 0x00, 0x01), 0, 0,
         SWD_ETOOLARGE, false, true, 7},
        // The default limit: array32 of 0x01000001 items
        {"array32 past default", BAD(0x94, 0x00, 0x07, 0xa1, 0x6d, 0xdd, 0x01, 0x00, 0x00, 0x01), 0,
         0, SWD_ETOOLARGE, false, true, 7},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

// An array or map declaring more items than the limit's bytes could hold
// (each item takes at least one byte) counts as too large.
Test(decoder, too_many_items_for_the_limit) {
    const bad_case_t cases[] = {
        // [0, 7, "m", array16 of 1025 (0x0401)
        {"array16 of 1025", BAD(0x94, 0x00, 0x07, 0xa1, 0x6d, 0xdc, 0x04, 0x01), 1024, 0,
         SWD_ETOOLARGE, false, true, 7},
        // [0, 7, "m", [map16 of 600 (0x0258) entries = 1200 items
        {"map16 of 600", BAD(0x94, 0x00, 0x07, 0xa1, 0x6d, 0x91, 0xde, 0x02, 0x58), 1024, 0,
         SWD_ETOOLARGE, false, true, 7},
        // array16 of 65535 as the frame itself
        {"array16 top", BAD(0xdc, 0xff, 0xff), 1024, 0, SWD_ETOOLARGE, false, false, 0},
        // With a limit of 16: [0, 7, "m", array16 of 12 (5 + 3 + 12 > 16)
        {"array16 of 12 under 16", BAD(0x94, 0x00, 0x07, 0xa1, 0x6d, 0xdc, 0x00, 0x0c), 16, 0,
         SWD_ETOOLARGE, false, true, 7},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_bad(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

// [0, 7, "m", [str8 of k bytes]]: 8 + k bytes in all.
static uint8_t *frame_of_size(size_t total) {
    uint8_t *f = malloc(total);
    cr_assert_not_null(f);
    size_t k = total - 8;
    cr_assert_lt(k, 256);
    const uint8_t head[] = {0x94, 0x00, 0x07, 0xa1, 0x6d, 0x91, 0xd9, (uint8_t)k};
    memcpy(f, head, sizeof(head));
    memset(f + 8, 'z', k);
    return f;
}

Test(decoder, limit_is_inclusive) {
    const size_t max = 64;
    uint8_t *exact = frame_of_size(max);
    swd_decoder_t *d = swd_decoder_new(max);
    swd_decoder_feed(d, exact, max);
    swd_msg_t m;
    swd_proto_error_t pe;
    int r = swd_decoder_next(d, &m, &pe);
    cr_assert_eq(r, 1, "a frame of exactly the limit: %d (%s)", r, r < 0 ? pe.message : "");
    swd_decoder_free(d);
    free(exact);

    uint8_t *over = frame_of_size(max + 1);
    bad_case_t c = {"one byte over", over, 8, max, 0, SWD_ETOOLARGE, false, true, 7};
    check_bad(&c); // refused from the 8 header bytes alone
    free(over);
    ASSERT_NO_LEAKS();
}

// [0, 7, "m", params] where params opens `depth - 1` more containers
// (arrays, or maps {"a": ...} when `maps`), the innermost holding 1: `depth`
// containers in all, the top-level array included. `*last` is the offset
// just past the innermost container's header.
static uint8_t *nested_frame(int depth, bool maps, size_t *len, size_t *last) {
    size_t cap = 8 + 3 * (size_t)depth;
    uint8_t *f = malloc(cap);
    cr_assert_not_null(f);
    size_t n = 0;
    const uint8_t head[] = {0x94, 0x00, 0x07, 0xa1, 0x6d};
    memcpy(f, head, sizeof(head));
    n += sizeof(head);
    for (int i = 1; i < depth; i++) {
        if (maps && i > 1) {
            f[n++] = 0x81; // fixmap, 1 entry
            *last = n;
            f[n++] = 0xa1; // key "a"
            f[n++] = 0x61;
        } else {
            f[n++] = 0x91; // fixarray, 1 element
            *last = n;
        }
    }
    f[n++] = 0x01;
    *len = n;
    return f;
}

Test(decoder, nesting_limit) {
    for (int maps = 0; maps < 2; maps++) {
        size_t len;
        size_t last;
        uint8_t *ok = nested_frame(SWD_PROTO_MAX_DEPTH, maps, &len, &last);
        swd_decoder_t *d = swd_decoder_new(0);
        swd_decoder_feed(d, ok, len);
        swd_msg_t m;
        swd_proto_error_t pe;
        int r = swd_decoder_next(d, &m, &pe);
        cr_assert_eq(r, 1, "depth %d (maps %d) refused: %d %s", SWD_PROTO_MAX_DEPTH, maps, r,
                     r < 0 ? pe.message : "");
        // Walk down to the innermost value.
        const msgpack_object *o = m.params;
        for (int i = 2; i <= SWD_PROTO_MAX_DEPTH; i++) {
            if (o->type == MSGPACK_OBJECT_ARRAY) {
                cr_assert_eq(o->via.array.size, 1);
                o = &o->via.array.ptr[0];
            } else {
                cr_assert_eq(o->type, MSGPACK_OBJECT_MAP);
                o = &o->via.map.ptr[0].val;
            }
        }
        cr_assert_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
        cr_assert_eq(o->via.u64, 1);
        swd_decoder_free(d);
        free(ok);

        uint8_t *deep = nested_frame(SWD_PROTO_MAX_DEPTH + 1, maps, &len, &last);
        // Refused at the header of the container one level too deep: what
        // follows it is never needed.
        bad_case_t c = {"one level too deep", deep, len, 0, last, SWD_ETOODEEP, false, true, 7};
        check_bad(&c);
        free(deep);

        // Far deeper than msgpack-c's own stack, through random splits.
        uint8_t *abyss = nested_frame(1000, maps, &len, &last);
        tv_lcg_t g;
        tv_lcg_seed(&g, 1000u + (unsigned)maps);
        seq_t s;
        decode_random_splits(abyss, len, 0, &g, 16, &s);
        cr_assert_eq(s.err, SWD_ETOODEEP);
        cr_assert_eq(s.n, 0);
        seq_free(&s);
        free(abyss);
    }
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Random input

// Bytes that are never a crash: messages, then at most one error, and the
// same outcome however they are split.
static void check_random_stream(const uint8_t *p, size_t n, size_t max, tv_lcg_t *g) {
    seq_t whole;
    decode_all_at_once(p, n, max, (tv_lcg_next(g) & 1u) != 0, &whole);
    seq_t split;
    decode_random_splits(p, n, max, g, 1 + tv_lcg_below(g, 64), &split);
    assert_same_seq(&split, &whole, "random bytes");
    seq_free(&split);
    seq_free(&whole);
}

Test(decoder, random_bytes_never_crash) {
    tv_lcg_t g;
    tv_lcg_seed(&g, 20240601);
    uint8_t buf[700];
    for (int round = 0; round < 3000; round++) {
        size_t n = 1 + tv_lcg_below(&g, sizeof(buf) - 1);
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)tv_lcg_next(&g);
        }
        // Most rounds look like the start of a msgpack-RPC frame, so the
        // bytes reach past the first check.
        switch (round % 4) {
        case 0:
            break;
        case 1:
            buf[0] = 0x94;
            if (n > 1) {
                buf[1] = 0x00;
            }
            break;
        case 2:
            buf[0] = (uint8_t)(0x90 | tv_lcg_below(&g, 16));
            break;
        default:
            buf[0] = 0x93;
            if (n > 1) {
                buf[1] = 0x02;
            }
            // Mostly small values and containers from here on.
            for (size_t i = 2; i < n; i++) {
                static const uint8_t pick[] = {0x91, 0x92, 0x81, 0xa1, 0x00, 0x7f, 0xc0, 0xdc,
                                               0xde, 0xd9, 0xcc, 0xcf, 0xca, 0xd4, 0xc7, 0xff};
                if (tv_lcg_below(&g, 2) == 0) {
                    buf[i] = pick[tv_lcg_below(&g, sizeof(pick))];
                }
            }
            break;
        }
        check_random_stream(buf, n, round % 2 ? 1024 : 0, &g);
    }
    ASSERT_NO_LEAKS();
}

Test(decoder, mutated_valid_streams_never_crash) {
    size_t len;
    uint8_t *stream = concat_vectors(2, &len);
    uint8_t *copy = malloc(len);
    cr_assert_not_null(copy);
    tv_lcg_t g;
    tv_lcg_seed(&g, 99);
    for (int round = 0; round < 2000; round++) {
        memcpy(copy, stream, len);
        uint32_t flips = 1 + tv_lcg_below(&g, 4);
        for (uint32_t k = 0; k < flips; k++) {
            copy[tv_lcg_below(&g, (uint32_t)len)] = (uint8_t)tv_lcg_next(&g);
        }
        size_t n = len - (round % 3 == 0 ? tv_lcg_below(&g, (uint32_t)len) : 0);
        check_random_stream(copy, n, round % 2 ? 1024 : 64, &g);
    }
    free(copy);
    free(stream);
    ASSERT_NO_LEAKS();
}
