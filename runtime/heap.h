// An intrusive 4-ary min-heap: the node lives inside its owner and knows
// its own slot, so removal and re-keying are O(log n) without a search.
// Used for timers, the dispatcher's per-type agent rankings and its ready
// type queues.
//
// Each entry carries its sort key next to the node pointer, so sifting
// compares keys in the heap's own array and never reads the owners: with
// 10^4 agents or timers, a comparison through a pointer was a cache miss
// (bench/README.md, dispatch).
#ifndef SWD_RUNTIME_HEAP_H
#define SWD_RUNTIME_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SWD_HEAP_NONE ((size_t)-1)
/// Children per node: four keys side by side are about one cache line,
/// and the tree is half as deep as a binary one.
#define SWD_HEAP_ARITY 4

typedef struct swd_heap_node {
    size_t index; ///< slot in the heap, SWD_HEAP_NONE when not in one
} swd_heap_node_t;

/// Entries come out least key first: `hi` decides, then `lo` (unsigned).
typedef struct swd_heap_key {
    uint64_t hi, lo;
} swd_heap_key_t;

typedef struct swd_heap_entry {
    swd_heap_key_t key;
    swd_heap_node_t *node; ///< borrowed
} swd_heap_entry_t;

typedef struct swd_heap {
    swd_heap_entry_t *entries; ///< owned array
    size_t len;
    size_t cap;
} swd_heap_t;

void swd_heap_init(swd_heap_t *h);
/// Frees the array; the nodes are left alone (and still marked as in it).
void swd_heap_close(swd_heap_t *h);
void swd_heap_node_init(swd_heap_node_t *n);
bool swd_heap_contains(const swd_heap_node_t *n);
/// Inserts `n` (not in a heap) with `key`.
void swd_heap_push(swd_heap_t *h, swd_heap_node_t *n, swd_heap_key_t key);
/// Gives `n` a new key, inserting it when absent.
void swd_heap_update(swd_heap_t *h, swd_heap_node_t *n, swd_heap_key_t key);
/// The least node, or NULL when empty.
swd_heap_node_t *swd_heap_top(const swd_heap_t *h);
swd_heap_node_t *swd_heap_pop(swd_heap_t *h);
/// Removes `n` from `h`; a no-op when `n` is in no heap.
void swd_heap_remove(swd_heap_t *h, swd_heap_node_t *n);
/// The i-th entry of the array (0 is the top), for walking the first
/// levels; NULL past the end.
const swd_heap_entry_t *swd_heap_at(const swd_heap_t *h, size_t i);
/// Re-points the entry of `n` after its owner moved in memory.
void swd_heap_moved(swd_heap_t *h, swd_heap_node_t *n);

static inline bool swd_heap_key_less(swd_heap_key_t a, swd_heap_key_t b) {
    return a.hi != b.hi ? a.hi < b.hi : a.lo < b.lo;
}

/// A signed value as a key part, in the same order.
static inline uint64_t swd_heap_key_i64(int64_t v) {
    return (uint64_t)v ^ ((uint64_t)1 << 63);
}

#endif
