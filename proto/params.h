// Typed access to named RPC parameters (DESIGN.md §2: `params` is an array
// holding one map with string keys). Each getter checks presence and type
// and, on failure, writes an `invalid_params` message naming the key into
// `p->error`. Unknown keys are ignored; a nil value counts as absent.
#ifndef SWD_PROTO_PARAMS_H
#define SWD_PROTO_PARAMS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct swd_params {
    const msgpack_object_kv *kv; ///< borrowed from the decoded message
    uint32_t n;
    char error[256]; ///< the last failure, for the invalid_params reply
} swd_params_t;

/// Opens a message's `params`: an array holding one map, or an empty array
/// or nil (no parameters). 0, or SWD_EPARAMS with `p->error` set.
int swd_params_open(swd_params_t *p, const msgpack_object *params);
/// Opens a map directly (an element of `task.submit_batch`'s `tasks`).
int swd_params_open_map(swd_params_t *p, const msgpack_object *map);

/// The value of `key`, or NULL when absent or nil.
const msgpack_object *swd_params_find(const swd_params_t *p, const char *key);
/// The value of `key` in any msgpack map, or NULL when absent or nil.
const msgpack_object *swd_map_find(const msgpack_object *map, const char *key);

// Getters: 0 when found and well-typed (value stored), 1 when absent and not
// required (output untouched, so preset defaults stay), SWD_EPARAMS otherwise.
int swd_params_str(swd_params_t *p, const char *key, bool required, const char **s, size_t *len);
/// Copies the string into `dst` (NUL-terminated); too long is an error.
int swd_params_strbuf(swd_params_t *p, const char *key, bool required, char *dst, size_t cap);
int swd_params_uint(swd_params_t *p, const char *key, bool required, uint64_t *v);
int swd_params_int(swd_params_t *p, const char *key, bool required, int64_t *v);
int swd_params_double(swd_params_t *p, const char *key, bool required, double *v);
int swd_params_bool(swd_params_t *p, const char *key, bool required, bool *v);
/// One of `names` (NULL-terminated); stores its index.
int swd_params_enum(swd_params_t *p, const char *key, bool required, const char *const *names,
                    int *out);
int swd_params_array(swd_params_t *p, const char *key, bool required,
                     const msgpack_object_array **a);
int swd_params_map(swd_params_t *p, const char *key, bool required, const msgpack_object **m);
int swd_params_any(swd_params_t *p, const char *key, bool required, const msgpack_object **o);

/// True when `o` is a str (or bin) equal to the NUL-terminated `s`.
bool swd_obj_streq(const msgpack_object *o, const char *s);

#endif
