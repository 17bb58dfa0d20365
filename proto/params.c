#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto/errors.h"
#include "proto/params.h"

__attribute__((format(printf, 2, 3))) static int bad(swd_params_t *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
    return SWD_EPARAMS;
}

static bool obj_streqn(const msgpack_object *o, const char *s, size_t n) {
    return (o->type == MSGPACK_OBJECT_STR || o->type == MSGPACK_OBJECT_BIN) &&
           o->via.str.size == n && memcmp(o->via.str.ptr, s, n) == 0;
}

bool swd_obj_streq(const msgpack_object *o, const char *s) {
    return obj_streqn(o, s, strlen(s));
}

int swd_params_open_map(swd_params_t *p, const msgpack_object *map) {
    p->kv = NULL;
    p->n = 0;
    p->error[0] = '\0';
    if (map->type != MSGPACK_OBJECT_MAP) {
        return bad(p, "parameters must be a map of named values");
    }
    p->kv = map->via.map.ptr;
    p->n = map->via.map.size;
    return 0;
}

int swd_params_open(swd_params_t *p, const msgpack_object *params) {
    p->kv = NULL;
    p->n = 0;
    p->error[0] = '\0';
    if (params->type == MSGPACK_OBJECT_NIL) {
        return 0;
    }
    if (params->type != MSGPACK_OBJECT_ARRAY) {
        return bad(p, "params must be an array holding one map");
    }
    if (params->via.array.size == 0) {
        return 0;
    }
    if (params->via.array.size != 1) {
        return bad(p, "params must be an array holding one map, not %u values",
                   (unsigned)params->via.array.size);
    }
    return swd_params_open_map(p, &params->via.array.ptr[0]);
}

static const msgpack_object *kv_find(const msgpack_object_kv *kv, uint32_t n, const char *key) {
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < n; i++) {
        if (obj_streqn(&kv[i].key, key, klen)) {
            return kv[i].val.type == MSGPACK_OBJECT_NIL ? NULL : &kv[i].val;
        }
    }
    return NULL;
}

const msgpack_object *swd_params_find(const swd_params_t *p, const char *key) {
    return kv_find(p->kv, p->n, key);
}

const msgpack_object *swd_map_find(const msgpack_object *map, const char *key) {
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    return kv_find(map->via.map.ptr, map->via.map.size, key);
}

// Looks `key` up: 0 found, 1 absent and optional, SWD_EPARAMS missing.
static int lookup(swd_params_t *p, const char *key, bool required, const msgpack_object **o) {
    *o = swd_params_find(p, key);
    if (*o != NULL) {
        return 0;
    }
    if (required) {
        return bad(p, "missing required parameter '%s'", key);
    }
    return 1;
}

static int wrong_type(swd_params_t *p, const char *key, const char *want) {
    return bad(p, "parameter '%s' must be %s", key, want);
}

int swd_params_str(swd_params_t *p, const char *key, bool required, const char **s, size_t *len) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    if (o->type != MSGPACK_OBJECT_STR && o->type != MSGPACK_OBJECT_BIN) {
        return wrong_type(p, key, "a string");
    }
    *s = o->via.str.ptr;
    if (len != NULL) {
        *len = o->via.str.size;
    }
    return 0;
}

int swd_params_strbuf(swd_params_t *p, const char *key, bool required, char *dst, size_t cap) {
    const char *s;
    size_t n;
    int r = swd_params_str(p, key, required, &s, &n);
    if (r != 0) {
        return r;
    }
    if (n >= cap || memchr(s, '\0', n) != NULL) {
        return bad(p, "parameter '%s' must be a string of at most %zu bytes without NUL", key,
                   cap - 1);
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int swd_params_uint(swd_params_t *p, const char *key, bool required, uint64_t *v) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        return wrong_type(p, key, "a non-negative integer");
    }
    *v = o->via.u64;
    return 0;
}

int swd_params_int(swd_params_t *p, const char *key, bool required, int64_t *v) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > INT64_MAX) {
        return wrong_type(p, key, "an integer");
    }
    *v = (int64_t)o->via.u64;
    return 0;
}

int swd_params_double(swd_params_t *p, const char *key, bool required, double *v) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *v = o->via.f64;
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *v = (double)o->via.u64;
        return 0;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *v = (double)o->via.i64;
        return 0;
    default:
        return wrong_type(p, key, "a number");
    }
}

int swd_params_bool(swd_params_t *p, const char *key, bool required, bool *v) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    if (o->type != MSGPACK_OBJECT_BOOLEAN) {
        return wrong_type(p, key, "a boolean");
    }
    *v = o->via.boolean;
    return 0;
}

int swd_params_enum(swd_params_t *p, const char *key, bool required, const char *const *names,
                    int *out) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    for (int i = 0; names[i] != NULL; i++) {
        if (swd_obj_streq(o, names[i])) {
            *out = i;
            return 0;
        }
    }
    char list[160] = "";
    size_t used = 0;
    for (int i = 0; names[i] != NULL && used < sizeof(list); i++) {
        int w = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    return bad(p, "parameter '%s' must be one of %s", key, list);
}

int swd_params_array(swd_params_t *p, const char *key, bool required,
                     const msgpack_object_array **a) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    if (o->type != MSGPACK_OBJECT_ARRAY) {
        return wrong_type(p, key, "an array");
    }
    *a = &o->via.array;
    return 0;
}

int swd_params_map(swd_params_t *p, const char *key, bool required, const msgpack_object **m) {
    const msgpack_object *o;
    int r = lookup(p, key, required, &o);
    if (r != 0) {
        return r;
    }
    if (o->type != MSGPACK_OBJECT_MAP) {
        return wrong_type(p, key, "a map");
    }
    *m = o;
    return 0;
}

int swd_params_any(swd_params_t *p, const char *key, bool required, const msgpack_object **o) {
    return lookup(p, key, required, o);
}
