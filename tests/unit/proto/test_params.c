// Named-parameter access (proto/params.c) and the two error-code spaces
// (proto/errors.c).
#include <criterion/criterion.h>
#include <errno.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "proto/errors.h"
#include "proto/params.h"
#include "tests/unit/leak_check.h"
#include "tests/unit/proto/vectors.h"

// ---------------------------------------------------------------------------
// Building msgpack objects: pack with msgpack-c, then unpack.

typedef struct obj {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked up;
} obj_t;

static msgpack_packer *obj_begin(obj_t *o) {
    msgpack_sbuffer_init(&o->sb);
    msgpack_packer_init(&o->pk, &o->sb, msgpack_sbuffer_write);
    msgpack_unpacked_init(&o->up);
    return &o->pk;
}

// The object packed since obj_begin(); valid until obj_free().
static const msgpack_object *obj_end(obj_t *o) {
    size_t off = 0;
    msgpack_unpack_return r = msgpack_unpack_next(&o->up, o->sb.data, o->sb.size, &off);
    cr_assert_eq(r, MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq(off, o->sb.size);
    return &o->up.data;
}

static void obj_free(obj_t *o) {
    msgpack_unpacked_destroy(&o->up);
    msgpack_sbuffer_destroy(&o->sb);
}

static void pack_key(msgpack_packer *pk, const char *key) {
    msgpack_pack_str(pk, strlen(key));
    msgpack_pack_str_body(pk, key, strlen(key));
}

static void pack_str(msgpack_packer *pk, const char *s) {
    pack_key(pk, s);
}

#define NKEYS 14

// `[{...}]` with one value of each kind, an unknown key and a nil.
static void pack_sample_map(msgpack_packer *pk) {
    msgpack_pack_map(pk, NKEYS);
    pack_key(pk, "name");
    pack_str(pk, "hello");
    pack_key(pk, "count");
    msgpack_pack_uint64(pk, 42);
    pack_key(pk, "offset");
    msgpack_pack_int64(pk, -5);
    pack_key(pk, "ratio");
    msgpack_pack_double(pk, 1.5);
    pack_key(pk, "flag");
    msgpack_pack_true(pk);
    pack_key(pk, "priority");
    pack_str(pk, "high");
    pack_key(pk, "items");
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint8(pk, 1);
    msgpack_pack_uint8(pk, 2);
    pack_key(pk, "labels");
    msgpack_pack_map(pk, 1);
    pack_key(pk, "team");
    pack_str(pk, "core");
    pack_key(pk, "nothing");
    msgpack_pack_nil(pk);
    pack_key(pk, "blob");
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "xy", 2);
    pack_key(pk, "huge");
    msgpack_pack_uint64(pk, UINT64_MAX);
    pack_key(pk, "small");
    msgpack_pack_float(pk, 0.5f);
    pack_key(pk, "nul");
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
    pack_key(pk, "unknown_key_ignored");
    msgpack_pack_uint8(pk, 0);
}

static const msgpack_object *sample_params(obj_t *o) {
    msgpack_packer *pk = obj_begin(o);
    msgpack_pack_array(pk, 1);
    pack_sample_map(pk);
    return obj_end(o);
}

static void assert_error_names(const swd_params_t *p, const char *key) {
    char quoted[64];
    snprintf(quoted, sizeof(quoted), "'%s'", key);
    cr_assert_not_null(strstr(p->error, quoted), "error \"%s\" does not name %s", p->error, quoted);
}

// ---------------------------------------------------------------------------
// swd_params_open

Test(params, open_array_of_one_map) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    cr_assert_eq(p.n, NKEYS);
    cr_assert_str_eq(p.error, "");
    cr_assert_not_null(swd_params_find(&p, "name"));
    cr_assert_null(swd_params_find(&p, "nothing"), "nil counts as absent");
    cr_assert_null(swd_params_find(&p, "absent"));
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, open_empty_array_and_nil) {
    obj_t o;
    msgpack_pack_array(obj_begin(&o), 0);
    swd_params_t p;
    memset(&p, 0x5a, sizeof(p));
    cr_assert_eq(swd_params_open(&p, obj_end(&o)), 0);
    cr_assert_eq(p.n, 0);
    cr_assert_str_eq(p.error, "");
    uint64_t v = 77;
    cr_assert_eq(swd_params_uint(&p, "limit", false, &v), 1);
    cr_assert_eq(v, 77);
    cr_assert_eq(swd_params_uint(&p, "limit", true, &v), SWD_EPARAMS);
    assert_error_names(&p, "limit");
    obj_free(&o);

    msgpack_pack_nil(obj_begin(&o));
    memset(&p, 0x5a, sizeof(p));
    cr_assert_eq(swd_params_open(&p, obj_end(&o)), 0);
    cr_assert_eq(p.n, 0);
    const char *s = "preset";
    cr_assert_eq(swd_params_str(&p, "name", false, &s, NULL), 1);
    cr_assert_str_eq(s, "preset");
    cr_assert_eq(swd_params_str(&p, "name", true, &s, NULL), SWD_EPARAMS);
    assert_error_names(&p, "name");
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, open_refuses_non_arrays) {
    obj_t o;
    swd_params_t p;

    // A bare map (the one-map array forgotten).
    msgpack_packer *pk = obj_begin(&o);
    msgpack_pack_map(pk, 1);
    pack_key(pk, "task_id");
    pack_str(pk, "t1");
    cr_assert_eq(swd_params_open(&p, obj_end(&o)), SWD_EPARAMS);
    cr_assert_not_null(strstr(p.error, "params"), "error \"%s\" does not name params", p.error);
    cr_assert_not_null(strstr(p.error, "array"), "error \"%s\"", p.error);
    cr_assert_eq(p.n, 0);
    cr_assert_null(swd_params_find(&p, "task_id"));
    obj_free(&o);

    msgpack_pack_uint8(obj_begin(&o), 5);
    cr_assert_eq(swd_params_open(&p, obj_end(&o)), SWD_EPARAMS);
    cr_assert_not_null(strstr(p.error, "params"), "error \"%s\"", p.error);
    obj_free(&o);

    pack_str(obj_begin(&o), "task_id");
    cr_assert_eq(swd_params_open(&p, obj_end(&o)), SWD_EPARAMS);
    cr_assert_not_null(strstr(p.error, "params"), "error \"%s\"", p.error);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, open_refuses_arrays_of_other_shapes) {
    obj_t o;
    swd_params_t p;

    // Two maps.
    msgpack_packer *pk = obj_begin(&o);
    msgpack_pack_array(pk, 2);
    pack_sample_map(pk);
    pack_sample_map(pk);
    cr_assert_eq(swd_params_open(&p, obj_end(&o)), SWD_EPARAMS);
    cr_assert_not_null(strstr(p.error, "params"), "error \"%s\"", p.error);
    cr_assert_not_null(strstr(p.error, "2"), "error \"%s\" does not give the count", p.error);
    cr_assert_eq(p.n, 0);
    obj_free(&o);

    // Positional params, the msgpack-RPC default, are not swarmd's.
    pk = obj_begin(&o);
    msgpack_pack_array(pk, 1);
    pack_str(pk, "t1");
    cr_assert_eq(swd_params_open(&p, obj_end(&o)), SWD_EPARAMS);
    cr_assert_neq(p.error[0], '\0');
    obj_free(&o);

    // swd_params_open_map on something that is not a map.
    pk = obj_begin(&o);
    msgpack_pack_array(pk, 0);
    cr_assert_eq(swd_params_open_map(&p, obj_end(&o)), SWD_EPARAMS);
    cr_assert_not_null(strstr(p.error, "map"), "error \"%s\"", p.error);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, open_map_directly) {
    obj_t o;
    pack_sample_map(obj_begin(&o));
    swd_params_t p;
    cr_assert_eq(swd_params_open_map(&p, obj_end(&o)), 0);
    cr_assert_eq(p.n, NKEYS);
    uint64_t count = 0;
    cr_assert_eq(swd_params_uint(&p, "count", true, &count), 0);
    cr_assert_eq(count, 42);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// Getters: present, absent optional, absent required, nil, wrong type.

// The absent and nil cases every getter shares: optional leaves the output
// alone and returns 1, required fails naming the key.
#define CHECK_ABSENT(call_opt, call_req, key)                                                      \
    do {                                                                                           \
        cr_assert_eq((call_opt), 1, "optional %s", key);                                           \
        cr_assert_eq((call_req), SWD_EPARAMS, "required %s", key);                                 \
        assert_error_names(&p, key);                                                               \
        cr_assert_not_null(strstr(p.error, "missing"), "error \"%s\"", p.error);                   \
    } while (0)

Test(params, get_str) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    const char *s = NULL;
    size_t n = 0;
    cr_assert_eq(swd_params_str(&p, "name", true, &s, &n), 0);
    cr_assert_eq(n, 5);
    cr_assert_arr_eq(s, "hello", 5);
    s = NULL;
    cr_assert_eq(swd_params_str(&p, "name", false, &s, NULL), 0, "len may be NULL");
    cr_assert_arr_eq(s, "hello", 5);
    // bin counts as a string.
    cr_assert_eq(swd_params_str(&p, "blob", true, &s, &n), 0);
    cr_assert_eq(n, 2);
    cr_assert_arr_eq(s, "xy", 2);

    const char *keep = "default";
    size_t keep_n = 99;
    for (int i = 0; i < 2; i++) {
        const char *key = i ? "nothing" : "absent";
        s = keep;
        n = keep_n;
        CHECK_ABSENT(swd_params_str(&p, key, false, &s, &n), swd_params_str(&p, key, true, &s, &n),
                     key);
        cr_assert_eq(s, keep);
        cr_assert_eq(n, keep_n);
    }

    s = keep;
    cr_assert_eq(swd_params_str(&p, "count", true, &s, &n), SWD_EPARAMS);
    assert_error_names(&p, "count");
    cr_assert_not_null(strstr(p.error, "string"), "error \"%s\"", p.error);
    cr_assert_eq(s, keep);
    // A wrong type is an error even when the key is optional.
    cr_assert_eq(swd_params_str(&p, "items", false, &s, &n), SWD_EPARAMS);
    assert_error_names(&p, "items");
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, get_strbuf) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    char buf[16];
    cr_assert_eq(swd_params_strbuf(&p, "name", true, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "hello");
    // Exactly fits: 5 bytes and the NUL.
    char six[6];
    cr_assert_eq(swd_params_strbuf(&p, "name", true, six, sizeof(six)), 0);
    cr_assert_str_eq(six, "hello");
    // Too long by one.
    char five[5] = "keep";
    cr_assert_eq(swd_params_strbuf(&p, "name", true, five, sizeof(five)), SWD_EPARAMS);
    assert_error_names(&p, "name");
    cr_assert_not_null(strstr(p.error, "4"), "error \"%s\" gives the limit", p.error);
    cr_assert_str_eq(five, "keep");
    // An embedded NUL cannot be a C string.
    cr_assert_eq(swd_params_strbuf(&p, "nul", true, buf, sizeof(buf)), SWD_EPARAMS);
    assert_error_names(&p, "nul");

    strcpy(buf, "default");
    CHECK_ABSENT(swd_params_strbuf(&p, "absent", false, buf, sizeof(buf)),
                 swd_params_strbuf(&p, "absent", true, buf, sizeof(buf)), "absent");
    CHECK_ABSENT(swd_params_strbuf(&p, "nothing", false, buf, sizeof(buf)),
                 swd_params_strbuf(&p, "nothing", true, buf, sizeof(buf)), "nothing");
    cr_assert_str_eq(buf, "default");
    cr_assert_eq(swd_params_strbuf(&p, "flag", false, buf, sizeof(buf)), SWD_EPARAMS);
    assert_error_names(&p, "flag");
    cr_assert_str_eq(buf, "default");
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, get_uint) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    uint64_t v = 0;
    cr_assert_eq(swd_params_uint(&p, "count", true, &v), 0);
    cr_assert_eq(v, 42);
    cr_assert_eq(swd_params_uint(&p, "huge", true, &v), 0);
    cr_assert_eq(v, UINT64_MAX);
    v = 1000;
    CHECK_ABSENT(swd_params_uint(&p, "absent", false, &v), swd_params_uint(&p, "absent", true, &v),
                 "absent");
    CHECK_ABSENT(swd_params_uint(&p, "nothing", false, &v),
                 swd_params_uint(&p, "nothing", true, &v), "nothing");
    cr_assert_eq(v, 1000);
    cr_assert_eq(swd_params_uint(&p, "offset", true, &v), SWD_EPARAMS, "negative");
    assert_error_names(&p, "offset");
    cr_assert_eq(swd_params_uint(&p, "ratio", true, &v), SWD_EPARAMS, "float");
    assert_error_names(&p, "ratio");
    cr_assert_eq(swd_params_uint(&p, "name", false, &v), SWD_EPARAMS, "string");
    assert_error_names(&p, "name");
    cr_assert_eq(v, 1000);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, get_int) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    int64_t v = 0;
    cr_assert_eq(swd_params_int(&p, "offset", true, &v), 0);
    cr_assert_eq(v, -5);
    cr_assert_eq(swd_params_int(&p, "count", true, &v), 0);
    cr_assert_eq(v, 42);
    v = -1000;
    CHECK_ABSENT(swd_params_int(&p, "absent", false, &v), swd_params_int(&p, "absent", true, &v),
                 "absent");
    CHECK_ABSENT(swd_params_int(&p, "nothing", false, &v), swd_params_int(&p, "nothing", true, &v),
                 "nothing");
    cr_assert_eq(v, -1000);
    cr_assert_eq(swd_params_int(&p, "huge", true, &v), SWD_EPARAMS, "past INT64_MAX");
    assert_error_names(&p, "huge");
    cr_assert_eq(swd_params_int(&p, "flag", true, &v), SWD_EPARAMS);
    assert_error_names(&p, "flag");
    cr_assert_eq(v, -1000);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, get_double) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    double v = 0;
    cr_assert_eq(swd_params_double(&p, "ratio", true, &v), 0);
    cr_assert(v == 1.5);
    cr_assert_eq(swd_params_double(&p, "small", true, &v), 0, "float32");
    cr_assert(v == 0.5);
    cr_assert_eq(swd_params_double(&p, "count", true, &v), 0, "integers are numbers");
    cr_assert(v == 42.0);
    cr_assert_eq(swd_params_double(&p, "offset", true, &v), 0);
    cr_assert(v == -5.0);
    v = 3.25;
    CHECK_ABSENT(swd_params_double(&p, "absent", false, &v),
                 swd_params_double(&p, "absent", true, &v), "absent");
    CHECK_ABSENT(swd_params_double(&p, "nothing", false, &v),
                 swd_params_double(&p, "nothing", true, &v), "nothing");
    cr_assert(v == 3.25);
    cr_assert_eq(swd_params_double(&p, "name", true, &v), SWD_EPARAMS);
    assert_error_names(&p, "name");
    cr_assert_not_null(strstr(p.error, "number"), "error \"%s\"", p.error);
    cr_assert(v == 3.25);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, get_bool) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    bool v = false;
    cr_assert_eq(swd_params_bool(&p, "flag", true, &v), 0);
    cr_assert(v);
    v = false;
    CHECK_ABSENT(swd_params_bool(&p, "absent", false, &v), swd_params_bool(&p, "absent", true, &v),
                 "absent");
    CHECK_ABSENT(swd_params_bool(&p, "nothing", false, &v),
                 swd_params_bool(&p, "nothing", true, &v), "nothing");
    cr_assert_not(v);
    cr_assert_eq(swd_params_bool(&p, "count", true, &v), SWD_EPARAMS, "1 is not true");
    assert_error_names(&p, "count");
    cr_assert_not(v);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, get_enum) {
    static const char *const priorities[] = {"critical", "high", "medium", "low", NULL};
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);
    int v = -1;
    cr_assert_eq(swd_params_enum(&p, "priority", true, priorities, &v), 0);
    cr_assert_eq(v, 1);
    v = 2;
    CHECK_ABSENT(swd_params_enum(&p, "absent", false, priorities, &v),
                 swd_params_enum(&p, "absent", true, priorities, &v), "absent");
    CHECK_ABSENT(swd_params_enum(&p, "nothing", false, priorities, &v),
                 swd_params_enum(&p, "nothing", true, priorities, &v), "nothing");
    cr_assert_eq(v, 2);
    // "hello" is no priority: the message names the key and every choice.
    cr_assert_eq(swd_params_enum(&p, "name", true, priorities, &v), SWD_EPARAMS);
    assert_error_names(&p, "name");
    cr_assert_not_null(strstr(p.error, "critical, high, medium, low"), "error \"%s\"", p.error);
    cr_assert_eq(v, 2);
    // Not a string at all: the same answer.
    cr_assert_eq(swd_params_enum(&p, "count", false, priorities, &v), SWD_EPARAMS);
    assert_error_names(&p, "count");
    cr_assert_not_null(strstr(p.error, "critical, high, medium, low"), "error \"%s\"", p.error);
    // A prefix of a name is not the name.
    static const char *const longer[] = {"highest", "higher", NULL};
    cr_assert_eq(swd_params_enum(&p, "priority", true, longer, &v), SWD_EPARAMS);
    cr_assert_not_null(strstr(p.error, "highest, higher"), "error \"%s\"", p.error);
    cr_assert_eq(v, 2);
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, get_array_map_any) {
    obj_t o;
    swd_params_t p;
    cr_assert_eq(swd_params_open(&p, sample_params(&o)), 0);

    const msgpack_object_array *a = NULL;
    cr_assert_eq(swd_params_array(&p, "items", true, &a), 0);
    cr_assert_eq(a->size, 2);
    cr_assert_eq(a->ptr[1].via.u64, 2);
    const msgpack_object_array *a_keep = a;
    CHECK_ABSENT(swd_params_array(&p, "absent", false, &a),
                 swd_params_array(&p, "absent", true, &a), "absent");
    CHECK_ABSENT(swd_params_array(&p, "nothing", false, &a),
                 swd_params_array(&p, "nothing", true, &a), "nothing");
    cr_assert_eq(a, a_keep);
    cr_assert_eq(swd_params_array(&p, "labels", true, &a), SWD_EPARAMS);
    assert_error_names(&p, "labels");

    const msgpack_object *m = NULL;
    cr_assert_eq(swd_params_map(&p, "labels", true, &m), 0);
    cr_assert_eq(m->type, MSGPACK_OBJECT_MAP);
    cr_assert(swd_obj_streq(swd_map_find(m, "team"), "core"));
    const msgpack_object *m_keep = m;
    CHECK_ABSENT(swd_params_map(&p, "absent", false, &m), swd_params_map(&p, "absent", true, &m),
                 "absent");
    CHECK_ABSENT(swd_params_map(&p, "nothing", false, &m), swd_params_map(&p, "nothing", true, &m),
                 "nothing");
    cr_assert_eq(m, m_keep);
    cr_assert_eq(swd_params_map(&p, "items", true, &m), SWD_EPARAMS);
    assert_error_names(&p, "items");

    const msgpack_object *any = NULL;
    cr_assert_eq(swd_params_any(&p, "ratio", true, &any), 0);
    cr_assert_eq(any->type, MSGPACK_OBJECT_FLOAT64);
    cr_assert_eq(swd_params_any(&p, "absent", false, &any), 1);
    cr_assert_eq(swd_params_any(&p, "nothing", true, &any), SWD_EPARAMS);
    assert_error_names(&p, "nothing");
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

Test(params, map_find_and_streq) {
    obj_t o;
    const msgpack_object *params = sample_params(&o);
    const msgpack_object *map = &params->via.array.ptr[0];
    cr_assert_null(swd_map_find(NULL, "name"));
    cr_assert_null(swd_map_find(params, "name"), "an array is not a map");
    cr_assert_null(swd_map_find(map, "nothing"));
    cr_assert_null(swd_map_find(map, "nam"));
    cr_assert_null(swd_map_find(map, "names"));
    const msgpack_object *name = swd_map_find(map, "name");
    cr_assert_not_null(name);
    cr_assert(swd_obj_streq(name, "hello"));
    cr_assert_not(swd_obj_streq(name, "hell"));
    cr_assert_not(swd_obj_streq(name, "hello!"));
    cr_assert_not(swd_obj_streq(name, ""));
    cr_assert(swd_obj_streq(swd_map_find(map, "blob"), "xy"), "bin compares too");
    cr_assert_not(swd_obj_streq(swd_map_find(map, "count"), "42"));
    obj_free(&o);
    ASSERT_NO_LEAKS();
}

// ---------------------------------------------------------------------------
// errors.c

// DESIGN.md §2, in the order given there.
static const char *const design_codes[] = {
    "invalid_request", "invalid_params", "unknown_method",   "not_found", "unauthorized",
    "conflict",        "overloaded",     "budget_exhausted", "too_large", "timeout",
    "cancelled",       "shutting_down",  "internal",
};
#define NDESIGN (sizeof(design_codes) / sizeof(design_codes[0]))

Test(errors, rpc_codes_match_design) {
    cr_assert_eq(SWD_RPC_ERROR_COUNT - 1, (int)NDESIGN);
    for (size_t i = 0; i < NDESIGN; i++) {
        swd_rpc_error_t e = (swd_rpc_error_t)(i + 1);
        const char *code = swd_rpc_error_code(e);
        cr_assert_not_null(code, "code %zu", i + 1);
        cr_assert_str_eq(code, design_codes[i]);
        cr_assert_eq(swd_rpc_error_parse(code, strlen(code)), e, "%s", code);
        cr_assert_eq(swd_rpc_error_parse(design_codes[i], strlen(design_codes[i])), e, "%s",
                     design_codes[i]);
    }
    cr_assert_str_eq(swd_rpc_error_code(SWD_RPC_INVALID_REQUEST), "invalid_request");
    cr_assert_str_eq(swd_rpc_error_code(SWD_RPC_TOO_LARGE), "too_large");
    cr_assert_str_eq(swd_rpc_error_code(SWD_RPC_INTERNAL), "internal");
    ASSERT_NO_LEAKS();
}

Test(errors, rpc_codes_edges) {
    cr_assert_null(swd_rpc_error_code(SWD_RPC_OK));
    cr_assert_null(swd_rpc_error_code(SWD_RPC_ERROR_COUNT));
    cr_assert_null(swd_rpc_error_code((swd_rpc_error_t)-1));
    // Unknown codes (an agent's own, say) read as internal.
    cr_assert_eq(swd_rpc_error_parse("bogus", 5), SWD_RPC_INTERNAL);
    cr_assert_eq(swd_rpc_error_parse("", 0), SWD_RPC_INTERNAL);
    cr_assert_eq(swd_rpc_error_parse("not_foun", 8), SWD_RPC_INTERNAL);
    cr_assert_eq(swd_rpc_error_parse("NOT_FOUND", 9), SWD_RPC_INTERNAL);
    // The length is what counts: no NUL needed, a longer buffer is fine.
    cr_assert_eq(swd_rpc_error_parse("timeoutXYZ", 7), SWD_RPC_TIMEOUT);
    cr_assert_eq(swd_rpc_error_parse("not_found", 3), SWD_RPC_INTERNAL);
    static const char raw[] = {'c', 'o', 'n', 'f', 'l', 'i', 'c', 't'};
    cr_assert_eq(swd_rpc_error_parse(raw, sizeof(raw)), SWD_RPC_CONFLICT);
    ASSERT_NO_LEAKS();
}

Test(errors, strerror_and_names) {
    cr_assert_str_eq(swd_strerror(SWD_EPROTO), "malformed msgpack-RPC stream");
    cr_assert_str_eq(swd_err_name(SWD_EPROTO), "SWD_EPROTO");
    cr_assert_str_eq(swd_err_name(SWD_ETOOLARGE), "SWD_ETOOLARGE");
    cr_assert_str_eq(swd_strerror(SWD_EPARAMS), "invalid parameters");
    cr_assert_str_eq(swd_err_name(SWD_EOVERFLOW), "SWD_EOVERFLOW");

    // Every swarmd code has its own name and a description, and none of
    // them collides with libuv's range (which ends at -4095).
    static const int all[] = {
#define X(name, value, text) SWD_E##name,
        SWD_ERRNO_MAP(X)
#undef X
    };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        cr_assert_lt(all[i], -4095);
        cr_assert_eq(strncmp(swd_err_name(all[i]), "SWD_E", 5), 0, "%d", all[i]);
        cr_assert_str_neq(swd_strerror(all[i]), "unknown error");
        for (size_t j = 0; j < i; j++) {
            cr_assert_neq(all[i], all[j]);
            cr_assert_str_neq(swd_err_name(all[i]), swd_err_name(all[j]));
        }
    }

    // Negative errno values (libuv's on Linux) pass through.
    cr_assert_str_eq(swd_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(swd_err_name(-ENOENT), "ENOENT");
    cr_assert_str_eq(swd_strerror(-ECONNRESET), strerror(ECONNRESET));
    cr_assert_str_eq(swd_err_name(-ECONNRESET), "ECONNRESET");
    cr_assert_str_eq(swd_err_name(-4095), "EOF");
    cr_assert_str_eq(swd_strerror(-4095), "end of file");
    cr_assert_str_eq(swd_strerror(1), "unknown error");
    cr_assert_str_eq(swd_err_name(-6000), "UNKNOWN");
    ASSERT_NO_LEAKS();
}
