#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "proto/errors.h"
#include "proto/json.h"

// ---------------------------------------------------------------------------
// UTF-8 and base64

// Length of the well-formed UTF-8 sequence at `p` (RFC 3629: no overlong
// forms, no surrogates, nothing past U+10FFFF), or 0 when it is not one.
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    if (c < 0x80) {
        return 1;
    }
    size_t len;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || p[1] < lo || p[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    return len;
}

static bool utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            return false;
        }
        i += k;
    }
    return true;
}

// Copies `s` with each byte that starts no well-formed sequence replaced by
// U+FFFD, the usual lossy decoding of text that claims to be UTF-8.
static char *utf8_repair(const char *s, size_t n, size_t *outlen) {
    const unsigned char *p = (const unsigned char *)s;
    char *out = swd_xmalloc(n * 3 + 1);
    size_t o = 0;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

static char *base64_encode(const unsigned char *p, size_t n, size_t *outlen) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = swd_xmalloc((n + 2) / 3 * 4 + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (i + 2 < n) {
            v |= p[i + 2];
        }
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = (char)(i + 1 < n ? tab[(v >> 6) & 63] : '=');
        out[o++] = (char)(i + 2 < n ? tab[v & 63] : '=');
    }
    out[o] = '\0';
    *outlen = o;
    return out;
}

// ---------------------------------------------------------------------------
// msgpack → JSON

// Text for a str, bin or map key: str bytes as UTF-8 (repaired), bin bytes
// as UTF-8 when they are, else base64. Always a fresh NUL-terminated copy.
static char *text_of(const char *s, size_t n, bool bin, size_t *len) {
    if (utf8_valid(s, n)) {
        *len = n;
        return swd_xstrndup(n ? s : "", n);
    }
    if (bin) {
        return base64_encode((const unsigned char *)s, n, len);
    }
    return utf8_repair(s, n, len);
}

static json_t *string_of(const char *s, size_t n, bool bin) {
    size_t len;
    char *t = text_of(s, n, bin, &len);
    // The text is valid UTF-8 by construction, so the unchecked setter is
    // safe and keeps embedded NULs.
    json_t *j = json_stringn_nocheck(t, len);
    free(t);
    return j;
}

static json_t *from_msgpack(const msgpack_object *o, int depth);

// A map key as text: strings and bins as their text, anything else as the
// compact JSON of its value.
static char *key_of(const msgpack_object *k, int depth, size_t *len) {
    if (k->type == MSGPACK_OBJECT_STR || k->type == MSGPACK_OBJECT_BIN) {
        return text_of(k->via.str.ptr, k->via.str.size, k->type == MSGPACK_OBJECT_BIN, len);
    }
    json_t *j = from_msgpack(k, depth);
    if (j == NULL) {
        return NULL;
    }
    char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | swd_json_real_flags(j));
    json_decref(j);
    if (s == NULL) {
        abort(); // jansson fails here only when out of memory
    }
    *len = strlen(s);
    char *out = swd_xstrdup(s);
    free(s);
    return out;
}

static json_t *array_from(const msgpack_object_array *a, int depth) {
    json_t *arr = json_array();
    for (uint32_t i = 0; i < a->size; i++) {
        json_t *v = from_msgpack(&a->ptr[i], depth + 1);
        if (v == NULL) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, v);
    }
    return arr;
}

static json_t *map_from(const msgpack_object_map *m, int depth) {
    json_t *obj = json_object();
    for (uint32_t i = 0; i < m->size; i++) {
        size_t klen = 0;
        char *key = key_of(&m->ptr[i].key, depth + 1, &klen);
        json_t *v = key ? from_msgpack(&m->ptr[i].val, depth + 1) : NULL;
        if (v == NULL) {
            free(key);
            json_decref(obj);
            return NULL;
        }
        json_object_setn_new_nocheck(obj, key, klen, v);
        free(key);
    }
    return obj;
}

static json_t *real_of(double d) {
    return isfinite(d) ? json_real(d) : json_null();
}

static json_t *from_msgpack(const msgpack_object *o, int depth) {
    if (depth > SWD_JSON_MAX_DEPTH) {
        return NULL;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            return json_real((double)o->via.u64);
        }
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return real_of(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return string_of(o->via.str.ptr, o->via.str.size, false);
    case MSGPACK_OBJECT_BIN:
        return string_of(o->via.bin.ptr, o->via.bin.size, true);
    case MSGPACK_OBJECT_ARRAY:
        return array_from(&o->via.array, depth);
    case MSGPACK_OBJECT_MAP:
        return map_from(&o->via.map, depth);
    case MSGPACK_OBJECT_EXT:
    default:
        return json_null();
    }
}

json_t *swd_json_from_msgpack(const msgpack_object *o) {
    if (o == NULL) {
        return NULL;
    }
    return from_msgpack(o, 1);
}

// ---------------------------------------------------------------------------
// JSON → msgpack

// Nesting depth of `j`, counting up to just past the limit.
static int depth_of(const json_t *j, int depth) {
    if (depth > SWD_JSON_MAX_DEPTH) {
        return depth;
    }
    int deepest = depth;
    if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v) {
            int d = depth_of(v, depth + 1);
            deepest = d > deepest ? d : deepest;
            if (deepest > SWD_JSON_MAX_DEPTH) {
                break;
            }
        }
    } else if (json_is_object(j)) {
        for (void *it = json_object_iter((json_t *)j); it != NULL;
             it = json_object_iter_next((json_t *)j, it)) {
            int d = depth_of(json_object_iter_value(it), depth + 1);
            deepest = d > deepest ? d : deepest;
            if (deepest > SWD_JSON_MAX_DEPTH) {
                break;
            }
        }
    }
    return deepest;
}

static int pack_value(msgpack_packer *pk, const json_t *j);

static int pack_str(msgpack_packer *pk, const char *s, size_t n) {
    if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, s, n) != 0) {
        return -EIO;
    }
    return 0;
}

static int pack_array(msgpack_packer *pk, const json_t *j) {
    size_t n = json_array_size(j);
    if (n > UINT32_MAX || msgpack_pack_array(pk, n) != 0) {
        return -EIO;
    }
    for (size_t i = 0; i < n; i++) {
        int r = pack_value(pk, json_array_get(j, i));
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

static int pack_object(msgpack_packer *pk, const json_t *j) {
    size_t n = json_object_size(j);
    if (n > UINT32_MAX || msgpack_pack_map(pk, n) != 0) {
        return -EIO;
    }
    for (void *it = json_object_iter((json_t *)j); it != NULL;
         it = json_object_iter_next((json_t *)j, it)) {
        int r = pack_str(pk, json_object_iter_key(it), json_object_iter_key_len(it));
        if (r == 0) {
            r = pack_value(pk, json_object_iter_value(it));
        }
        if (r != 0) {
            return r;
        }
    }
    return 0;
}

static int pack_value(msgpack_packer *pk, const json_t *j) {
    int r;
    switch (json_typeof(j)) {
    case JSON_OBJECT:
        return pack_object(pk, j);
    case JSON_ARRAY:
        return pack_array(pk, j);
    case JSON_STRING:
        return pack_str(pk, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: {
        json_int_t v = json_integer_value(j);
        r = v >= 0 ? msgpack_pack_uint64(pk, (uint64_t)v) : msgpack_pack_int64(pk, (int64_t)v);
        break;
    }
    case JSON_REAL:
        r = msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_TRUE:
        r = msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        r = msgpack_pack_false(pk);
        break;
    case JSON_NULL:
    default:
        r = msgpack_pack_nil(pk);
        break;
    }
    return r == 0 ? 0 : -EIO;
}

int swd_json_pack(msgpack_packer *pk, const json_t *j) {
    if (j == NULL || depth_of(j, 1) > SWD_JSON_MAX_DEPTH) {
        return SWD_EPARAMS;
    }
    return pack_value(pk, j);
}

int swd_json_pack_string(msgpack_packer *pk, const char *text, char *err, size_t errlen) {
    json_error_t je;
    json_t *j = json_loads(text ? text : "", JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (j == NULL) {
        if (errlen > 0) {
            snprintf(err, errlen, "line %d, column %d: %s", je.line, je.column, je.text);
        }
        return SWD_EPARAMS;
    }
    int r = swd_json_pack(pk, j);
    if (r == SWD_EPARAMS && errlen > 0) {
        snprintf(err, errlen, "JSON nests deeper than %d levels", SWD_JSON_MAX_DEPTH);
    }
    json_decref(j);
    return r;
}

// ---------------------------------------------------------------------------
// Dump precision

// The fewest significant digits with which `d` prints and reads back exactly.
static int digits_for(double d) {
    char buf[40];
    for (int p = 1; p < 17; p++) {
        snprintf(buf, sizeof(buf), "%.*g", p, d);
        if (strtod(buf, NULL) == d) {
            return p;
        }
    }
    return 17;
}

static int precision_of(const json_t *j, int depth) {
    if (depth > SWD_JSON_MAX_DEPTH) {
        return 17;
    }
    int p = 1;
    if (json_is_real(j)) {
        p = digits_for(json_real_value(j));
    } else if (json_is_array(j)) {
        size_t i;
        const json_t *v;
        json_array_foreach(j, i, v) {
            int q = precision_of(v, depth + 1);
            p = q > p ? q : p;
        }
    } else if (json_is_object(j)) {
        for (void *it = json_object_iter((json_t *)j); it != NULL;
             it = json_object_iter_next((json_t *)j, it)) {
            int q = precision_of(json_object_iter_value(it), depth + 1);
            p = q > p ? q : p;
        }
    }
    return p;
}

size_t swd_json_real_flags(const json_t *j) {
    if (j == NULL) {
        return JSON_REAL_PRECISION(17);
    }
    return JSON_REAL_PRECISION(precision_of(j, 1));
}
