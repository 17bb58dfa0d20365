// The encoder (proto/encoder.c): each message kind comes out byte for byte
// as the hand-computed vectors, decodes back to what was encoded, and the
// buffer is reused after a reset.
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/decoder.h"
#include "proto/encoder.h"
#include "proto/params.h"
#include "tests/unit/leak_check.h"
#include "tests/unit/proto/vectors.h"

static void assert_bytes(const swd_encoder_t *e, const tv_vector_t *v) {
    cr_assert_eq(e->buf.len, v->len, "%s: %zu bytes, expected %zu", v->name, e->buf.len, v->len);
    for (size_t i = 0; i < v->len; i++) {
        cr_assert_eq((uint8_t)e->buf.data[i], v->bytes[i],
                     "%s: byte %zu is 0x%02x, expected 0x%02x", v->name, i,
                     (unsigned)(uint8_t)e->buf.data[i], (unsigned)v->bytes[i]);
    }
}

// Each vector's message, written through the encoder API.
static void encode_request(swd_encoder_t *e) {
    msgpack_packer *pk = swd_enc_request(e, 7, "task.get");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 1);
    swd_pack_kv_str(pk, "task_id", "t1");
}

static void encode_result(swd_encoder_t *e) {
    msgpack_packer *pk = swd_enc_result(e, 7);
    msgpack_pack_map(pk, 2);
    swd_pack_kv_str(pk, "task_id", "t1");
    swd_pack_kv_str(pk, "state", "queued");
}

static void encode_error(swd_encoder_t *e) {
    swd_enc_error(e, 9, SWD_RPC_NOT_FOUND, "no task t9");
}

static void encode_error_data(swd_encoder_t *e) {
    msgpack_packer *pk = swd_enc_error_data(e, 10, SWD_RPC_INVALID_PARAMS, "bad index 2");
    msgpack_pack_map(pk, 1);
    swd_pack_kv_u64(pk, "index", 2);
    swd_enc_error_data_end(e);
}

static void encode_error_default_message(swd_encoder_t *e) {
    swd_enc_error(e, 3, SWD_RPC_TIMEOUT, NULL);
}

static void encode_notify(swd_encoder_t *e) {
    msgpack_packer *pk = swd_enc_notify(e, "event");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 3);
    swd_pack_kv_str(pk, "topic", "task");
    swd_pack_kv_str(pk, "event", "queued");
    swd_pack_kv_u64(pk, "ts", UINT64_C(1700000000000));
}

static void encode_result_msgid8(swd_encoder_t *e) {
    swd_pack_bool(swd_enc_result(e, 200), true);
}

static void encode_request_msgid16(swd_encoder_t *e) {
    msgpack_pack_array(swd_enc_request(e, 300, "ping"), 0);
}

static void encode_result_msgid32(swd_encoder_t *e) {
    msgpack_pack_nil(swd_enc_result(e, 70000));
}

static void encode_request_msgid_max(swd_encoder_t *e) {
    msgpack_pack_array(swd_enc_request(e, UINT32_MAX, "ping"), 0);
}

typedef struct enc_case {
    const tv_vector_t *v;
    void (*encode)(swd_encoder_t *e);
} enc_case_t;

// tv_request_bin and tv_request_msgid_wide are not here: the encoder always
// writes str methods and minimal integers.
static const enc_case_t cases[] = {
    {&tv_request, encode_request},
    {&tv_result, encode_result},
    {&tv_error, encode_error},
    {&tv_error_data, encode_error_data},
    {&tv_error_default_message, encode_error_default_message},
    {&tv_notify, encode_notify},
    {&tv_result_msgid8, encode_result_msgid8},
    {&tv_request_msgid16, encode_request_msgid16},
    {&tv_result_msgid32, encode_result_msgid32},
    {&tv_request_msgid_max, encode_request_msgid_max},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void check_one(const enc_case_t *c) {
    swd_encoder_t e;
    swd_encoder_init(&e);
    c->encode(&e);
    assert_bytes(&e, c->v);
    swd_encoder_close(&e);
    cr_assert_null(e.buf.data);
    cr_assert_eq(e.buf.len, 0);
}

Test(encoder, request) {
    check_one(&cases[0]);
    ASSERT_NO_LEAKS();
}

Test(encoder, result) {
    check_one(&cases[1]);
    ASSERT_NO_LEAKS();
}

Test(encoder, error) {
    check_one(&cases[2]);
    ASSERT_NO_LEAKS();
}

Test(encoder, error_with_data) {
    check_one(&cases[3]);
    ASSERT_NO_LEAKS();
}

Test(encoder, error_without_message_uses_the_code) {
    check_one(&cases[4]);
    ASSERT_NO_LEAKS();
}

Test(encoder, notify) {
    check_one(&cases[5]);
    ASSERT_NO_LEAKS();
}

Test(encoder, msgid_widths) {
    for (size_t i = 6; i < NCASES; i++) {
        check_one(&cases[i]);
    }
    ASSERT_NO_LEAKS();
}

// Messages accumulate back to back until a reset.
Test(encoder, messages_accumulate) {
    swd_encoder_t e;
    swd_encoder_init(&e);
    size_t total = 0;
    for (size_t i = 0; i < NCASES; i++) {
        cases[i].encode(&e);
        total += cases[i].v->len;
        cr_assert_eq(e.buf.len, total);
    }
    size_t off = 0;
    for (size_t i = 0; i < NCASES; i++) {
        cr_assert_arr_eq(e.buf.data + off, cases[i].v->bytes, cases[i].v->len, "%s",
                         cases[i].v->name);
        off += cases[i].v->len;
    }
    swd_encoder_close(&e);
    ASSERT_NO_LEAKS();
}

Test(encoder, reset_reuses_the_buffer) {
    swd_encoder_t e;
    swd_encoder_init(&e);
    encode_request(&e);
    assert_bytes(&e, &tv_request);
    char *data = e.buf.data;
    size_t cap = e.buf.cap;
    cr_assert_not_null(data);
    cr_assert_geq(cap, tv_request.len);

    for (size_t i = 0; i < NCASES; i++) {
        swd_encoder_reset(&e);
        cr_assert_eq(e.buf.len, 0);
        cases[i].encode(&e);
        assert_bytes(&e, cases[i].v);
        // Small messages fit the memory the first one got.
        cr_assert_eq(e.buf.data, data);
        cr_assert_eq(e.buf.cap, cap);
    }

    // A message larger than the buffer grows it, keeping what came first.
    swd_encoder_reset(&e);
    encode_error(&e);
    size_t big = 3 * cap;
    char *payload = malloc(big);
    cr_assert_not_null(payload);
    memset(payload, 'q', big);
    msgpack_packer *pk = swd_enc_result(&e, 1);
    msgpack_pack_str(pk, big);
    msgpack_pack_str_body(pk, payload, big);
    cr_assert_gt(e.buf.cap, cap);
    cr_assert_arr_eq(e.buf.data, tv_error.bytes, tv_error.len);
    free(payload);

    // The grown buffer serves again after a reset.
    swd_encoder_reset(&e);
    encode_notify(&e);
    assert_bytes(&e, &tv_notify);

    // Stealing hands the bytes over and leaves the encoder empty but usable.
    size_t len = 0;
    char *stolen = swd_buf_steal(&e.buf, &len);
    cr_assert_eq(len, tv_notify.len);
    cr_assert_arr_eq(stolen, tv_notify.bytes, len);
    free(stolen);
    cr_assert_null(e.buf.data);
    cr_assert_eq(e.buf.len, 0);
    encode_result(&e);
    assert_bytes(&e, &tv_result);
    swd_encoder_close(&e);
    ASSERT_NO_LEAKS();
}

// Whatever is encoded decodes to the same thing.
Test(encoder, round_trip) {
    static const uint64_t ids[] = {0,     1,     127,        128,        255,       256,
                                   65535, 65536, 0x7fffffff, 0xfffffffe, UINT32_MAX};
    const size_t nids = sizeof(ids) / sizeof(ids[0]);
    swd_encoder_t e;
    swd_encoder_init(&e);
    for (size_t i = 0; i < nids; i++) {
        msgpack_packer *pk = swd_enc_request(&e, ids[i], "task.submit");
        msgpack_pack_array(pk, 1);
        msgpack_pack_map(pk, 4);
        swd_pack_kv_str(pk, "type", "echo");
        swd_pack_kv_u64(pk, "estimated_tokens", ids[i]);
        swd_pack_kv_i64(pk, "delta", -(int64_t)i);
        swd_pack_kv_bool(pk, "flag", i % 2 == 0);

        pk = swd_enc_result(&e, ids[i]);
        msgpack_pack_map(pk, 2);
        swd_pack_kv_f64(pk, "ratio", 0.25 * (double)i);
        swd_pack_kv_nil(pk, "next");

        swd_enc_error(&e, ids[i], (swd_rpc_error_t)(1 + i % (SWD_RPC_ERROR_COUNT - 1)), "oops");

        pk = swd_enc_error_data(&e, ids[i], SWD_RPC_INVALID_PARAMS, "bad");
        msgpack_pack_map(pk, 1);
        swd_pack_kv_u64(pk, "index", i);
        swd_enc_error_data_end(&e);

        pk = swd_enc_notify(&e, "event");
        msgpack_pack_array(pk, 1);
        msgpack_pack_map(pk, 1);
        swd_pack_kv_str(pk, "topic", NULL);
    }

    swd_decoder_t *d = swd_decoder_new(0);
    swd_decoder_feed(d, e.buf.data, e.buf.len);
    swd_msg_t m;
    swd_proto_error_t pe;
    for (size_t i = 0; i < nids; i++) {
        int r = swd_decoder_next(d, &m, &pe);
        cr_assert_eq(r, 1, "request %zu: %d %s", i, r, r < 0 ? pe.message : "");
        cr_assert_eq(m.kind, SWD_MSG_REQUEST);
        cr_assert_eq(m.msgid, ids[i]);
        cr_assert_eq(m.method_len, strlen("task.submit"));
        cr_assert_arr_eq(m.method, "task.submit", m.method_len);
        swd_params_t p;
        cr_assert_eq(swd_params_open(&p, m.params), 0);
        char type[8];
        cr_assert_eq(swd_params_strbuf(&p, "type", true, type, sizeof(type)), 0);
        cr_assert_str_eq(type, "echo");
        uint64_t tokens = 0;
        cr_assert_eq(swd_params_uint(&p, "estimated_tokens", true, &tokens), 0);
        cr_assert_eq(tokens, ids[i]);
        int64_t delta = 1;
        cr_assert_eq(swd_params_int(&p, "delta", true, &delta), 0);
        cr_assert_eq(delta, -(int64_t)i);
        bool flag = false;
        cr_assert_eq(swd_params_bool(&p, "flag", true, &flag), 0);
        cr_assert_eq(flag, i % 2 == 0);

        cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
        cr_assert_eq(m.kind, SWD_MSG_RESPONSE);
        cr_assert_eq(m.msgid, ids[i]);
        cr_assert_eq(m.error->type, MSGPACK_OBJECT_NIL);
        const msgpack_object *ratio = swd_map_find(m.result, "ratio");
        cr_assert_not_null(ratio);
        cr_assert_eq(ratio->type, MSGPACK_OBJECT_FLOAT64);
        cr_assert(ratio->via.f64 == 0.25 * (double)i);
        cr_assert_null(swd_map_find(m.result, "next")); // nil counts as absent
        cr_assert_eq(m.result->via.map.size, 2);

        cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
        cr_assert_eq(m.kind, SWD_MSG_RESPONSE);
        cr_assert_eq(m.msgid, ids[i]);
        const msgpack_object *code = swd_map_find(m.error, "code");
        cr_assert_not_null(code);
        cr_assert_eq(code->type, MSGPACK_OBJECT_STR);
        swd_rpc_error_t want = (swd_rpc_error_t)(1 + i % (SWD_RPC_ERROR_COUNT - 1));
        cr_assert_eq(swd_rpc_error_parse(code->via.str.ptr, code->via.str.size), want);
        cr_assert(swd_obj_streq(swd_map_find(m.error, "message"), "oops"));
        cr_assert_eq(m.result->type, MSGPACK_OBJECT_NIL);

        cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
        cr_assert_eq(m.msgid, ids[i]);
        cr_assert(swd_obj_streq(swd_map_find(m.error, "code"), "invalid_params"));
        const msgpack_object *index = swd_map_find(swd_map_find(m.error, "data"), "index");
        cr_assert_not_null(index);
        cr_assert_eq(index->via.u64, i);
        cr_assert_eq(m.result->type, MSGPACK_OBJECT_NIL);

        cr_assert_eq(swd_decoder_next(d, &m, NULL), 1);
        cr_assert_eq(m.kind, SWD_MSG_NOTIFY);
        cr_assert_eq(m.method_len, 5);
        cr_assert_arr_eq(m.method, "event", 5);
        cr_assert_eq(swd_params_open(&p, m.params), 0);
        const char *s = NULL;
        cr_assert_eq(swd_params_str(&p, "topic", false, &s, NULL), 1); // packed as nil
        cr_assert_null(s);
    }
    cr_assert_eq(swd_decoder_next(d, &m, NULL), 0);
    cr_assert_eq(swd_decoder_pending(d), 0);
    swd_decoder_free(d);
    swd_encoder_close(&e);
    ASSERT_NO_LEAKS();
}

// Encoder output split across reads still decodes to the vectors.
Test(encoder, round_trip_bytewise) {
    swd_encoder_t e;
    swd_encoder_init(&e);
    for (size_t i = 0; i < NCASES; i++) {
        cases[i].encode(&e);
    }
    swd_decoder_t *d = swd_decoder_new(0);
    swd_msg_t m;
    size_t next = 0;
    for (size_t i = 0; i < e.buf.len; i++) {
        swd_decoder_feed(d, e.buf.data + i, 1);
        int r = swd_decoder_next(d, &m, NULL);
        cr_assert_geq(r, 0);
        if (r == 1) {
            cr_assert_lt(next, NCASES);
            cr_assert_eq(m.kind, cases[next].v->kind);
            cr_assert_eq(m.msgid, cases[next].v->msgid);
            next++;
        }
    }
    cr_assert_eq(next, NCASES);
    swd_decoder_free(d);
    swd_encoder_close(&e);
    ASSERT_NO_LEAKS();
}

Test(encoder, pack_helpers) {
    swd_encoder_t e;
    swd_encoder_init(&e);
    msgpack_packer *pk = &e.pk;
    swd_pack_str(pk, "ab");
    swd_pack_strn(pk, "xyz", 2);
    swd_pack_str_or_nil(pk, NULL);
    swd_pack_str_or_nil(pk, "");
    swd_pack_bool(pk, false);
    swd_pack_bool(pk, true);
    swd_pack_kv_nil(pk, "k");
    swd_pack_kv_i64(pk, "k", -2);
    swd_pack_kv_u64(pk, "k", 256);
    swd_pack_kv_f64(pk, "k", 1.5);
    swd_pack_kv_bool(pk, "k", true);
    static const uint8_t want[] = {
        0xa2, 0x61, 0x62,             // "ab"
        0xa2, 0x78, 0x79,             // "xy"
        0xc0,                         // nil
        0xa0,                         // ""
        0xc2,                         // false
        0xc3,                         // true
        0xa1, 0x6b, 0xc0,             // "k", nil
        0xa1, 0x6b, 0xfe,             // "k", -2 (negative fixint)
        0xa1, 0x6b, 0xcd, 0x01, 0x00, // "k", uint16 256
        0xa1, 0x6b, 0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // "k", float64 1.5
        0xa1, 0x6b, 0xc3,                                                 // "k", true
    };
    cr_assert_eq(e.buf.len, sizeof(want));
    cr_assert_arr_eq(e.buf.data, want, sizeof(want));
    swd_encoder_close(&e);
    ASSERT_NO_LEAKS();
}
