// The heap (runtime/heap.h) orders every timer, every type's agents and the
// ready queues. Random pushes, re-keys and removals are checked against a
// plain array: the top is always the least key, and everything comes out in
// key order.
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "runtime/heap.h"
#include "runtime/rng.h"

#define N 2000

typedef struct item {
    swd_heap_node_t node;
    swd_heap_key_t key;
    bool in;
} item_t;

static item_t items[N];

#define ITEM_OF(n) ((item_t *)((char *)(n)-offsetof(item_t, node)))

static swd_heap_key_t random_key(swd_rng_t *rng) {
    // Few distinct values, so that `hi` ties and `lo` has to decide.
    return (swd_heap_key_t){.hi = swd_rng_below(rng, 50), .lo = swd_rng_below(rng, 50)};
}

// The least key among the items in the heap, by brute force.
static const item_t *least(void) {
    const item_t *best = NULL;
    for (size_t i = 0; i < N; i++) {
        if (items[i].in && (best == NULL || swd_heap_key_less(items[i].key, best->key))) {
            best = &items[i];
        }
    }
    return best;
}

static void check_top(const swd_heap_t *h) {
    const item_t *want = least();
    swd_heap_node_t *top = swd_heap_top(h);
    if (want == NULL) {
        cr_assert_null(top);
        return;
    }
    cr_assert_not_null(top);
    const item_t *got = ITEM_OF(top);
    cr_assert(!swd_heap_key_less(want->key, got->key), "top (%llu,%llu) but (%llu,%llu) is in",
              (unsigned long long)got->key.hi, (unsigned long long)got->key.lo,
              (unsigned long long)want->key.hi, (unsigned long long)want->key.lo);
}

Test(heap, random_operations_keep_the_least_on_top) {
    swd_heap_t h;
    swd_heap_init(&h);
    swd_rng_t rng;
    swd_rng_seed(&rng, 11);
    memset(items, 0, sizeof(items));
    for (size_t i = 0; i < N; i++) {
        swd_heap_node_init(&items[i].node);
    }
    for (int step = 0; step < 20 * N; step++) {
        item_t *it = &items[swd_rng_below(&rng, N)];
        switch (swd_rng_below(&rng, 4)) {
        case 0: // push or re-key
        case 1:
            it->key = random_key(&rng);
            swd_heap_update(&h, &it->node, it->key);
            it->in = true;
            break;
        case 2:
            swd_heap_remove(&h, &it->node); // also when absent
            it->in = false;
            cr_assert(!swd_heap_contains(&it->node));
            break;
        default: {
            swd_heap_node_t *top = swd_heap_pop(&h);
            if (top != NULL) {
                ITEM_OF(top)->in = false;
            }
        }
        }
        if (step % 101 == 0) {
            check_top(&h);
        }
    }
    // Drain: keys come out in order.
    swd_heap_key_t prev = {0, 0};
    size_t left = h.len;
    for (swd_heap_node_t *n; (n = swd_heap_pop(&h)) != NULL; left--) {
        cr_assert(!swd_heap_key_less(ITEM_OF(n)->key, prev), "out of order");
        prev = ITEM_OF(n)->key;
        ITEM_OF(n)->in = false;
    }
    cr_assert_eq(left, 0);
    cr_assert_null(least());
    swd_heap_close(&h);
}

Test(heap, signed_keys_keep_their_order) {
    const int64_t v[] = {INT64_MIN, -5, -1, 0, 1, 7, INT64_MAX};
    for (size_t i = 0; i + 1 < sizeof(v) / sizeof(v[0]); i++) {
        cr_assert_lt(swd_heap_key_i64(v[i]), swd_heap_key_i64(v[i + 1]));
    }
}

Test(heap, an_owner_that_moved_is_found_again) {
    swd_heap_t h;
    swd_heap_init(&h);
    item_t a[3], b[3];
    for (int i = 0; i < 3; i++) {
        swd_heap_node_init(&a[i].node);
        swd_heap_push(&h, &a[i].node, (swd_heap_key_t){.hi = (uint64_t)(3 - i)});
    }
    memcpy(b, a, sizeof(a)); // as realloc moves an array of owners
    for (int i = 0; i < 3; i++) {
        swd_heap_moved(&h, &b[i].node);
    }
    cr_assert_eq(swd_heap_pop(&h), &b[2].node);
    swd_heap_remove(&h, &b[0].node);
    cr_assert_eq(swd_heap_pop(&h), &b[1].node);
    cr_assert_null(swd_heap_pop(&h));
    swd_heap_close(&h);
}
