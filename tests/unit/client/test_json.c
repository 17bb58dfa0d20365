// Tests of the msgpack ⇄ JSON bridge (proto/json.h): round trips of nested
// values, 64-bit integer edges, bin, floats, map keys, and JSON text errors.
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/buf.h"
#include "proto/errors.h"
#include "proto/json.h"
#include "tests/unit/leak_check.h"

// A packer writing into a buffer, and the object the buffer decodes to.
typedef struct packed {
    swd_buf_t buf;
    msgpack_packer pk;
    msgpack_unpacked up;
} packed_t;

static void packed_init(packed_t *p) {
    swd_buf_init(&p->buf);
    msgpack_packer_init(&p->pk, &p->buf, swd_buf_write_cb);
    msgpack_unpacked_init(&p->up);
}

static const msgpack_object *packed_obj(packed_t *p) {
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&p->up, p->buf.data, p->buf.len, &off);
    cr_assert_eq(r, MSGPACK_UNPACK_SUCCESS, "packed bytes do not decode (%d)", (int)r);
    cr_assert_eq(off, p->buf.len, "packed bytes hold more than one object");
    return &p->up.data;
}

static void packed_close(packed_t *p) {
    msgpack_unpacked_destroy(&p->up);
    swd_buf_close(&p->buf);
}

// JSON → msgpack: packs `j` into `out`, which this initialises.
static void pack_json(const json_t *j, packed_t *out) {
    packed_init(out);
    cr_assert_eq(swd_json_pack(&out->pk, j), 0);
}

// msgpack → JSON → msgpack.
static void round_trip(const msgpack_object *in, packed_t *out) {
    json_t *j = swd_json_from_msgpack(in);
    cr_assert_not_null(j);
    pack_json(j, out);
    json_decref(j);
}

static char *dump(const json_t *j) {
    return json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS | swd_json_real_flags(j));
}

static void assert_dump(const json_t *j, const char *want) {
    char *s = dump(j);
    cr_assert_str_eq(s, want);
    free(s);
}

static void pack_key(msgpack_packer *pk, const char *k) {
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

Test(json, nested_round_trip_is_exact) {
    packed_t in;
    packed_init(&in);
    msgpack_packer *pk = &in.pk;
    msgpack_pack_map(pk, 6);
    pack_key(pk, "name");
    pack_key(pk, "héllo \"quoted\"\n");
    pack_key(pk, "min");
    msgpack_pack_int64(pk, INT64_MIN);
    pack_key(pk, "exact");
    msgpack_pack_uint64(pk, (UINT64_C(1) << 53) + 1);
    pack_key(pk, "list");
    msgpack_pack_array(pk, 4);
    msgpack_pack_int8(pk, -1);
    pack_key(pk, "two");
    msgpack_pack_array(pk, 4);
    msgpack_pack_double(pk, 3.5);
    msgpack_pack_nil(pk);
    msgpack_pack_true(pk);
    msgpack_pack_false(pk);
    msgpack_pack_map(pk, 0);
    pack_key(pk, "nested");
    msgpack_pack_map(pk, 1);
    pack_key(pk, "a");
    msgpack_pack_map(pk, 1);
    pack_key(pk, "b");
    msgpack_pack_array(pk, 0);
    pack_key(pk, "max_i64");
    msgpack_pack_int64(pk, INT64_MAX);
    const msgpack_object *orig = packed_obj(&in);

    json_t *j = swd_json_from_msgpack(orig);
    cr_assert(json_is_integer(json_object_get(j, "min")));
    cr_assert_eq(json_integer_value(json_object_get(j, "min")), INT64_MIN);
    cr_assert_eq(json_integer_value(json_object_get(j, "exact")), 9007199254740993LL);
    assert_dump(json_object_get(j, "list"), "[-1,\"two\",[3.5,null,true,false],{}]");
    json_decref(j);

    packed_t out;
    round_trip(orig, &out);
    cr_assert(msgpack_object_equal(*orig, *packed_obj(&out)), "round trip changed the value");
    packed_close(&out);
    packed_close(&in);
    ASSERT_NO_LEAKS();
}

Test(json, uint64_beyond_int64_becomes_real) {
    packed_t in;
    packed_init(&in);
    msgpack_pack_array(&in.pk, 2);
    msgpack_pack_uint64(&in.pk, UINT64_MAX);
    msgpack_pack_uint64(&in.pk, (uint64_t)INT64_MAX);
    json_t *j = swd_json_from_msgpack(packed_obj(&in));
    cr_assert(json_is_real(json_array_get(j, 0)));
    cr_assert_eq(json_real_value(json_array_get(j, 0)), 18446744073709551615.0);
    cr_assert(json_is_integer(json_array_get(j, 1)));
    cr_assert_eq(json_integer_value(json_array_get(j, 1)), INT64_MAX);

    packed_t out;
    pack_json(j, &out);
    const msgpack_object *o = packed_obj(&out);
    cr_assert_eq(o->via.array.ptr[0].type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_eq(o->via.array.ptr[0].via.f64, 18446744073709551615.0);
    cr_assert_eq(o->via.array.ptr[1].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(o->via.array.ptr[1].via.u64, (uint64_t)INT64_MAX);
    json_decref(j);
    packed_close(&out);
    packed_close(&in);
    ASSERT_NO_LEAKS();
}

Test(json, bin_is_text_when_utf8_else_base64) {
    static const char bad[] = {(char)0xff, 0x00, 0x01};
    packed_t in;
    packed_init(&in);
    msgpack_pack_array(&in.pk, 4);
    msgpack_pack_bin(&in.pk, 5);
    msgpack_pack_bin_body(&in.pk, "héll", 5);
    msgpack_pack_bin(&in.pk, 3);
    msgpack_pack_bin_body(&in.pk, bad, 3);
    msgpack_pack_bin(&in.pk, 4);
    msgpack_pack_bin_body(&in.pk, "\xc0\xaf\xed\xa0", 4); // overlong '/', a surrogate
    msgpack_pack_bin(&in.pk, 0);
    msgpack_pack_bin_body(&in.pk, "", 0);
    json_t *j = swd_json_from_msgpack(packed_obj(&in));
    cr_assert_str_eq(json_string_value(json_array_get(j, 0)), "héll");
    cr_assert_str_eq(json_string_value(json_array_get(j, 1)), "/wAB");
    cr_assert_str_eq(json_string_value(json_array_get(j, 2)), "wK/toA==");
    cr_assert_str_eq(json_string_value(json_array_get(j, 3)), "");

    // Back to msgpack, text comes back as str.
    packed_t out;
    pack_json(j, &out);
    const msgpack_object *o = packed_obj(&out);
    cr_assert_eq(o->via.array.ptr[0].type, MSGPACK_OBJECT_STR);
    cr_assert_eq(o->via.array.ptr[0].via.str.size, 5);
    json_decref(j);
    packed_close(&out);
    packed_close(&in);
    ASSERT_NO_LEAKS();
}

Test(json, str_with_bad_utf8_is_repaired_and_nul_kept) {
    packed_t in;
    packed_init(&in);
    msgpack_pack_map(&in.pk, 1);
    msgpack_pack_str(&in.pk, 3);
    msgpack_pack_str_body(&in.pk, "k\0y", 3);
    msgpack_pack_str(&in.pk, 4);
    msgpack_pack_str_body(&in.pk,
                          "a\xff"
                          "b\0",
                          4);
    json_t *j = swd_json_from_msgpack(packed_obj(&in));
    cr_assert_eq(json_object_size(j), 1);
    json_t *v = json_object_getn(j, "k\0y", 3);
    cr_assert_not_null(v, "a key with a NUL byte is kept whole");
    cr_assert_eq(json_string_length(v), 6);
    cr_assert_eq(memcmp(json_string_value(v),
                        "a\xef\xbf\xbd"
                        "b\0",
                        6),
                 0);

    packed_t out;
    round_trip(packed_obj(&in), &out);
    const msgpack_object *o = packed_obj(&out);
    cr_assert_eq(o->via.map.ptr[0].key.via.str.size, 3);
    cr_assert_eq(o->via.map.ptr[0].val.via.str.size, 6);
    json_decref(j);
    packed_close(&out);
    packed_close(&in);
    ASSERT_NO_LEAKS();
}

Test(json, floats_keep_their_value) {
    packed_t in;
    packed_init(&in);
    msgpack_pack_array(&in.pk, 6);
    msgpack_pack_double(&in.pk, 0.1);
    msgpack_pack_float(&in.pk, 1.5f);
    msgpack_pack_double(&in.pk, -1e300);
    msgpack_pack_double(&in.pk, NAN);
    msgpack_pack_double(&in.pk, INFINITY);
    msgpack_pack_double(&in.pk, 0.1 + 0.2);
    json_t *j = swd_json_from_msgpack(packed_obj(&in));
    cr_assert_eq(json_real_value(json_array_get(j, 0)), 0.1);
    cr_assert_eq(json_real_value(json_array_get(j, 1)), 1.5);
    cr_assert(json_is_null(json_array_get(j, 3)), "NaN has no JSON form");
    cr_assert(json_is_null(json_array_get(j, 4)), "Inf has no JSON form");
    // Printed with the fewest digits at which every real reads back exactly;
    // one real that needs 17 digits makes the whole document use 17.
    json_t *short_ones =
        json_pack("[O,O,O]", json_array_get(j, 0), json_array_get(j, 1), json_array_get(j, 2));
    assert_dump(short_ones, "[0.1,1.5,-1e300]");
    json_decref(short_ones);
    char *text = dump(j);
    json_t *back = json_loads(text, 0, NULL);
    cr_assert(json_equal(back, j), "%s does not read back", text);
    json_decref(back);
    free(text);

    packed_t out;
    pack_json(j, &out);
    const msgpack_object *o = packed_obj(&out);
    cr_assert_eq(o->via.array.ptr[0].type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_eq(o->via.array.ptr[0].via.f64, 0.1);
    cr_assert_eq(o->via.array.ptr[1].via.f64, 1.5);
    cr_assert_eq(o->via.array.ptr[2].via.f64, -1e300);
    cr_assert_eq(o->via.array.ptr[5].via.f64, 0.1 + 0.2);
    json_decref(j);
    packed_close(&out);
    packed_close(&in);
    ASSERT_NO_LEAKS();
}

Test(json, non_string_keys_are_stringified_and_ext_is_null) {
    packed_t in;
    packed_init(&in);
    msgpack_pack_map(&in.pk, 6);
    msgpack_pack_int32(&in.pk, -7);
    msgpack_pack_str(&in.pk, 1);
    msgpack_pack_str_body(&in.pk, "a", 1);
    msgpack_pack_true(&in.pk);
    msgpack_pack_nil(&in.pk);
    msgpack_pack_nil(&in.pk);
    msgpack_pack_int8(&in.pk, 1);
    msgpack_pack_array(&in.pk, 2);
    msgpack_pack_int8(&in.pk, 1);
    msgpack_pack_int8(&in.pk, 2);
    msgpack_pack_int8(&in.pk, 2);
    msgpack_pack_bin(&in.pk, 2);
    msgpack_pack_bin_body(&in.pk, "bk", 2);
    msgpack_pack_ext(&in.pk, 2, 5);
    msgpack_pack_ext_body(&in.pk, "xy", 2);
    msgpack_pack_ext(&in.pk, 1, 5);
    msgpack_pack_ext_body(&in.pk, "z", 1);
    msgpack_pack_int8(&in.pk, 3);
    json_t *j = swd_json_from_msgpack(packed_obj(&in));
    // The ext key reads as "null" like the nil key before it: the last one wins.
    assert_dump(j, "{\"-7\":\"a\",\"[1,2]\":2,\"bk\":null,\"null\":3,\"true\":null}");
    json_decref(j);
    packed_close(&in);
    ASSERT_NO_LEAKS();
}

Test(json, text_packs_exactly) {
    packed_t out;
    packed_init(&out);
    char err[128] = "";
    const char *text = "{\"a\": [1, 2.5, \"x\", null, true], \"min\": -9223372036854775808,"
                       " \"u\": 9007199254740993, \"s\": \"\\u0000z\", \"e\": {}}";
    cr_assert_eq(swd_json_pack_string(&out.pk, text, err, sizeof(err)), 0, "%s", err);
    const msgpack_object *o = packed_obj(&out);
    cr_assert_eq(o->type, MSGPACK_OBJECT_MAP);
    cr_assert_eq(o->via.map.size, 5);
    // Objects keep document order.
    cr_assert_eq(memcmp(o->via.map.ptr[0].key.via.str.ptr, "a", 1), 0);
    const msgpack_object *a = &o->via.map.ptr[0].val;
    cr_assert_eq(a->via.array.size, 5);
    cr_assert_eq(a->via.array.ptr[0].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(a->via.array.ptr[1].type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_eq(a->via.array.ptr[2].type, MSGPACK_OBJECT_STR);
    cr_assert_eq(a->via.array.ptr[3].type, MSGPACK_OBJECT_NIL);
    cr_assert_eq(a->via.array.ptr[4].type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert_eq(o->via.map.ptr[1].val.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    cr_assert_eq(o->via.map.ptr[1].val.via.i64, INT64_MIN);
    cr_assert_eq(o->via.map.ptr[2].val.via.u64, (UINT64_C(1) << 53) + 1);
    cr_assert_eq(o->via.map.ptr[3].val.via.str.size, 2);
    cr_assert_eq(o->via.map.ptr[4].val.type, MSGPACK_OBJECT_MAP);
    packed_close(&out);

    // Scalars are documents too.
    packed_init(&out);
    cr_assert_eq(swd_json_pack_string(&out.pk, " \"just text\" ", err, sizeof(err)), 0);
    cr_assert_eq(packed_obj(&out)->type, MSGPACK_OBJECT_STR);
    packed_close(&out);
    ASSERT_NO_LEAKS();
}

Test(json, bad_text_names_line_and_column) {
    packed_t out;
    packed_init(&out);
    char err[128] = "";
    int r = swd_json_pack_string(&out.pk, "{\"a\": 1,\n  \"b\": }", err, sizeof(err));
    cr_assert_eq(r, SWD_EPARAMS);
    cr_assert_eq(out.buf.len, 0, "nothing is packed on error");
    cr_assert(strstr(err, "line 2, column 8") != NULL, "got: %s", err);

    r = swd_json_pack_string(&out.pk, "", err, sizeof(err));
    cr_assert_eq(r, SWD_EPARAMS);
    cr_assert(strstr(err, "line 1") != NULL, "got: %s", err);

    r = swd_json_pack_string(&out.pk, "[1, 2] trailing", err, sizeof(err));
    cr_assert_eq(r, SWD_EPARAMS, "trailing garbage is an error");

    r = swd_json_pack_string(&out.pk, "{\"n\": 18446744073709551616}", err, sizeof(err));
    cr_assert_eq(r, SWD_EPARAMS);
    cr_assert(strstr(err, "column") != NULL, "got: %s", err);
    cr_assert_eq(out.buf.len, 0);
    packed_close(&out);
    ASSERT_NO_LEAKS();
}

Test(json, depth_is_bounded) {
    size_t depth = SWD_JSON_MAX_DEPTH + 10;
    char *text = malloc(2 * depth + 1);
    memset(text, '[', depth);
    memset(text + depth, ']', depth);
    text[2 * depth] = '\0';
    packed_t out;
    packed_init(&out);
    char err[128] = "";
    cr_assert_eq(swd_json_pack_string(&out.pk, text, err, sizeof(err)), SWD_EPARAMS);
    cr_assert(strstr(err, "deeper") != NULL, "got: %s", err);
    cr_assert_eq(out.buf.len, 0);
    cr_assert_eq(swd_json_pack(&out.pk, NULL), SWD_EPARAMS);
    cr_assert_null(swd_json_from_msgpack(NULL));

    // Just inside the limit works.
    depth = SWD_JSON_MAX_DEPTH;
    memset(text, '[', depth);
    memset(text + depth, ']', depth);
    text[2 * depth] = '\0';
    cr_assert_eq(swd_json_pack_string(&out.pk, text, err, sizeof(err)), 0, "%s", err);
    free(text);
    packed_close(&out);
    ASSERT_NO_LEAKS();
}
