// The uint64 map (runtime/map.h) holds every task, agent and pending call
// by sequence number. These tests drive it the way the scheduler does
// (keys made in order, removed in about that order, and out of order) and
// the way a client can (any msgid), against a plain array as reference.
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "runtime/map.h"
#include "runtime/rng.h"

#define N 20000

// Tags stored as values: the map holds pointers, so point into this array.
static char tags[N];

static void *value_of(size_t i) {
    return &tags[i];
}

// Every key in [0, N) is present exactly when `in[i]`, with its own value.
static void check_all(const swd_u64map_t *m, const uint64_t *keys, const bool *in) {
    size_t live = 0;
    for (size_t i = 0; i < N; i++) {
        void *v = swd_u64map_get(m, keys[i]);
        if (in[i]) {
            cr_assert_eq(v, value_of(i), "key %llu lost or wrong", (unsigned long long)keys[i]);
            live++;
        } else {
            cr_assert_null(v, "key %llu still there", (unsigned long long)keys[i]);
        }
    }
    cr_assert_eq(m->len, live);
}

static void churn(const uint64_t *keys, uint64_t seed) {
    static bool in[N];
    swd_u64map_t m;
    swd_u64map_init(&m);
    swd_rng_t rng;
    swd_rng_seed(&rng, seed);
    for (size_t i = 0; i < N; i++) {
        in[i] = false;
    }
    for (int round = 0; round < 4; round++) {
        for (size_t i = 0; i < N; i++) {
            bool put = swd_rng_u64(&rng) % 3 != 0;
            if (put) {
                swd_u64map_put(&m, keys[i], value_of(i));
            } else if (in[i]) {
                cr_assert_eq(swd_u64map_del(&m, keys[i]), value_of(i));
            } else {
                cr_assert_null(swd_u64map_del(&m, keys[i]));
            }
            in[i] = put;
        }
        check_all(&m, keys, in);
    }
    // Oldest first, as retention removes finished tasks.
    for (size_t i = 0; i < N; i++) {
        if (in[i]) {
            cr_assert_eq(swd_u64map_del(&m, keys[i]), value_of(i));
            in[i] = false;
        }
        if (i % 997 == 0) {
            check_all(&m, keys, in);
        }
    }
    cr_assert_eq(m.len, 0);
    swd_u64map_close(&m);
}

Test(u64map, sequential_keys_survive_churn) {
    static uint64_t keys[N];
    for (size_t i = 0; i < N; i++) {
        keys[i] = i + 1;
    }
    churn(keys, 1);
}

Test(u64map, keys_a_whole_table_apart_survive_churn) {
    // Keys that share their low bits (and a stride of any table size) all
    // land in the same runs: the probe chains must still find each of them.
    static uint64_t keys[N];
    for (size_t i = 0; i < N; i++) {
        keys[i] = (uint64_t)i << 20;
    }
    churn(keys, 2);
}

Test(u64map, arbitrary_keys_survive_churn) {
    static uint64_t keys[N];
    swd_rng_t rng;
    swd_rng_seed(&rng, 3);
    for (size_t i = 0; i < N; i++) {
        keys[i] = (swd_rng_u64(&rng) & ~(uint64_t)0xffff) | i; // distinct
    }
    keys[0] = 0;
    keys[1] = UINT64_MAX;
    churn(keys, 4);
}

Test(u64map, put_replaces_and_empty_map_answers) {
    swd_u64map_t m;
    swd_u64map_init(&m);
    cr_assert_null(swd_u64map_get(&m, 7));
    cr_assert_null(swd_u64map_del(&m, 7));
    swd_u64map_put(&m, 7, value_of(1));
    swd_u64map_put(&m, 7, value_of(2));
    cr_assert_eq(m.len, 1);
    cr_assert_eq(swd_u64map_get(&m, 7), value_of(2));
    swd_u64map_close(&m);
}
