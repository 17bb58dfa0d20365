// Open-addressing hash maps (linear probing, backward-shift deletion, so no
// tombstones pile up): uint64 keys, and string keys (copied, owned).
// Values are borrowed pointers.
#ifndef SWD_RUNTIME_MAP_H
#define SWD_RUNTIME_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct swd_u64map_slot {
    uint64_t key;
    void *value; ///< NULL marks an empty slot, so values must not be NULL
} swd_u64map_slot_t;

typedef struct swd_u64map {
    swd_u64map_slot_t *slots;
    size_t cap; ///< a power of two (16 or more), or 0
    size_t len;
    uint32_t lane_len[8]; ///< entries per lane (map.c)
} swd_u64map_t;

void swd_u64map_init(swd_u64map_t *m);
void swd_u64map_close(swd_u64map_t *m);
/// Sets `key` to `value` (not NULL), replacing any previous value.
void swd_u64map_put(swd_u64map_t *m, uint64_t key, void *value);
void *swd_u64map_get(const swd_u64map_t *m, uint64_t key);
/// Removes `key`; returns its value, or NULL when absent.
void *swd_u64map_del(swd_u64map_t *m, uint64_t key);

typedef struct swd_strmap_slot {
    char *key; ///< owned copy; NULL marks an empty slot
    uint64_t hash;
    void *value;
} swd_strmap_slot_t;

typedef struct swd_strmap {
    swd_strmap_slot_t *slots;
    size_t cap;
    size_t len;
} swd_strmap_t;

void swd_strmap_init(swd_strmap_t *m);
void swd_strmap_close(swd_strmap_t *m);
void swd_strmap_put(swd_strmap_t *m, const char *key, size_t klen, void *value);
void *swd_strmap_get(const swd_strmap_t *m, const char *key, size_t klen);
void *swd_strmap_del(swd_strmap_t *m, const char *key, size_t klen);
/// Calls `cb` on every entry, in no particular order; `cb` must not change `m`.
void swd_strmap_foreach(const swd_strmap_t *m, void (*cb)(const char *key, void *value, void *data),
                        void *data);

#endif
