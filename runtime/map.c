#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"
#include "runtime/map.h"

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; // FNV-1a, then mixed for the low bits
    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    }
    return mix64(h);
}

// ---- uint64 keys ----

// Keys here are mostly sequence numbers (tasks, agents, calls), touched in
// about the order they were made. The table is U64_LANES interleaved
// linear-probing tables ("lanes": slot i is in lane i % U64_LANES, probes
// step by U64_LANES). Each run of U64_LANES consecutive keys hashes to one
// bucket of adjacent slots, one key per lane, so a task submitted, answered
// or expired right after its neighbour finds its slot in cache; the lane
// is the key's offset in its run rotated by the hash, so keys with equal
// low bits still spread over all lanes. Probe runs stay as short as in a
// plain table: a lane is one, for keys from different runs.
#define U64_LANES 8u
_Static_assert(sizeof(((swd_u64map_t *)0)->lane_len) / sizeof(uint32_t) == U64_LANES,
               "one count per lane");

static size_t u64_home(uint64_t key, size_t mask) {
    uint64_t h = mix64(key / U64_LANES);
    size_t lane = (size_t)((key + h) % U64_LANES);
    return (size_t)((h / U64_LANES) * U64_LANES + lane) & mask;
}

void swd_u64map_init(swd_u64map_t *m) {
    memset(m, 0, sizeof(*m));
}

void swd_u64map_close(swd_u64map_t *m) {
    free(m->slots);
    swd_u64map_init(m);
}

static void u64_grow(swd_u64map_t *m) {
    swd_u64map_slot_t *old = m->slots;
    size_t oldcap = m->cap;
    swd_u64map_init(m);
    m->cap = oldcap ? oldcap * 2 : 2 * U64_LANES;
    m->slots = swd_xcalloc(m->cap, sizeof(*m->slots));
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].value != NULL) {
            swd_u64map_put(m, old[i].key, old[i].value);
        }
    }
    free(old);
}

// Walks `key`'s probe run: its slot, or SIZE_MAX with the run's end (the
// free slot where it would go) in `*end`.
static size_t u64_probe(const swd_u64map_t *m, uint64_t key, size_t *end) {
    *end = SIZE_MAX;
    if (m->cap == 0) {
        return SIZE_MAX;
    }
    size_t mask = m->cap - 1;
    size_t i = u64_home(key, mask);
    for (; m->slots[i].value != NULL; i = (i + U64_LANES) & mask) {
        if (m->slots[i].key == key) {
            return i;
        }
    }
    *end = i;
    return SIZE_MAX;
}

static size_t u64_find(const swd_u64map_t *m, uint64_t key) {
    size_t end;
    return u64_probe(m, key, &end);
}

void swd_u64map_put(swd_u64map_t *m, uint64_t key, void *value) {
    assert(value != NULL); // NULL marks an empty slot
    size_t end;
    size_t i = u64_probe(m, key, &end);
    if (i != SIZE_MAX) {
        m->slots[i].value = value;
        return;
    }
    // Each lane is a table of cap / U64_LANES slots: keep each at most 3/4
    // full, which also keeps a free slot in every lane for the probes.
    if (m->cap == 0 || (m->lane_len[end % U64_LANES] + 1) * 4 > m->cap / U64_LANES * 3) {
        u64_grow(m);
        u64_probe(m, key, &end);
    }
    m->slots[end].key = key;
    m->slots[end].value = value;
    m->lane_len[end % U64_LANES]++;
    m->len++;
}

void *swd_u64map_get(const swd_u64map_t *m, uint64_t key) {
    size_t i = u64_find(m, key);
    return i == SIZE_MAX ? NULL : m->slots[i].value;
}

void *swd_u64map_del(swd_u64map_t *m, uint64_t key) {
    size_t i = u64_find(m, key);
    if (i == SIZE_MAX) {
        return NULL;
    }
    void *value = m->slots[i].value;
    size_t mask = m->cap - 1;
    m->lane_len[i % U64_LANES]--;
    m->len--;
    // Backward-shift within the lane: pull later entries of the probe run
    // into the hole. Distances are in slots, all multiples of U64_LANES.
    for (size_t j = (i + U64_LANES) & mask; m->slots[j].value != NULL; j = (j + U64_LANES) & mask) {
        size_t home = u64_home(m->slots[j].key, mask);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].value = NULL;
    return value;
}

// ---- string keys ----

void swd_strmap_init(swd_strmap_t *m) {
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void swd_strmap_close(swd_strmap_t *m) {
    for (size_t i = 0; i < m->cap; i++) {
        free(m->slots[i].key);
    }
    free(m->slots);
    swd_strmap_init(m);
}

static void str_insert(swd_strmap_t *m, char *key, uint64_t hash, void *value) {
    size_t mask = m->cap - 1;
    size_t i = hash & mask;
    while (m->slots[i].key != NULL) {
        i = (i + 1) & mask;
    }
    m->slots[i].key = key;
    m->slots[i].hash = hash;
    m->slots[i].value = value;
    m->len++;
}

static void str_grow(swd_strmap_t *m) {
    swd_strmap_slot_t *old = m->slots;
    size_t oldcap = m->cap;
    m->cap = oldcap ? oldcap * 2 : 16;
    m->slots = swd_xcalloc(m->cap, sizeof(*m->slots));
    m->len = 0;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i].key != NULL) {
            str_insert(m, old[i].key, old[i].hash, old[i].value);
        }
    }
    free(old);
}

static size_t str_find(const swd_strmap_t *m, const char *key, size_t klen, uint64_t hash) {
    if (m->cap == 0) {
        return SIZE_MAX;
    }
    size_t mask = m->cap - 1;
    for (size_t i = hash & mask; m->slots[i].key != NULL; i = (i + 1) & mask) {
        if (m->slots[i].hash == hash && strlen(m->slots[i].key) == klen &&
            memcmp(m->slots[i].key, key, klen) == 0) {
            return i;
        }
    }
    return SIZE_MAX;
}

void swd_strmap_put(swd_strmap_t *m, const char *key, size_t klen, void *value) {
    uint64_t hash = hash_bytes(key, klen);
    size_t i = str_find(m, key, klen, hash);
    if (i != SIZE_MAX) {
        m->slots[i].value = value;
        return;
    }
    if ((m->len + 1) * 4 > m->cap * 3) {
        str_grow(m);
    }
    str_insert(m, swd_xstrndup(key, klen), hash, value);
}

void *swd_strmap_get(const swd_strmap_t *m, const char *key, size_t klen) {
    size_t i = str_find(m, key, klen, hash_bytes(key, klen));
    return i == SIZE_MAX ? NULL : m->slots[i].value;
}

void *swd_strmap_del(swd_strmap_t *m, const char *key, size_t klen) {
    size_t i = str_find(m, key, klen, hash_bytes(key, klen));
    if (i == SIZE_MAX) {
        return NULL;
    }
    void *value = m->slots[i].value;
    free(m->slots[i].key);
    size_t mask = m->cap - 1;
    for (size_t j = (i + 1) & mask; m->slots[j].key != NULL; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->slots[i] = m->slots[j];
            i = j;
        }
    }
    m->slots[i].key = NULL;
    m->slots[i].value = NULL;
    m->len--;
    return value;
}

void swd_strmap_foreach(const swd_strmap_t *m, void (*cb)(const char *key, void *value, void *data),
                        void *data) {
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key != NULL) {
            cb(m->slots[i].key, m->slots[i].value, data);
        }
    }
}
