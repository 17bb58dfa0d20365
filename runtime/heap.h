// An intrusive binary min-heap: the node lives inside its owner and knows
// its own slot, so removal and re-keying are O(log n) without a search.
// Used for timers and for the dispatcher's per-type agent rankings.
#ifndef SWD_RUNTIME_HEAP_H
#define SWD_RUNTIME_HEAP_H

#include <stdbool.h>
#include <stddef.h>

#define SWD_HEAP_NONE ((size_t)-1)

typedef struct swd_heap_node {
    size_t index; ///< slot in the heap, SWD_HEAP_NONE when not in one
} swd_heap_node_t;

/// True when `a` must come out before `b`.
typedef bool (*swd_heap_less_fn)(const swd_heap_node_t *a, const swd_heap_node_t *b);

typedef struct swd_heap {
    swd_heap_node_t **nodes; ///< owned array; nodes are borrowed
    size_t len;
    size_t cap;
    swd_heap_less_fn less;
} swd_heap_t;

void swd_heap_init(swd_heap_t *h, swd_heap_less_fn less);
/// Frees the array; the nodes are left alone (and still marked as in it).
void swd_heap_close(swd_heap_t *h);
void swd_heap_node_init(swd_heap_node_t *n);
bool swd_heap_contains(const swd_heap_node_t *n);
void swd_heap_push(swd_heap_t *h, swd_heap_node_t *n);
/// The least node, or NULL when empty.
swd_heap_node_t *swd_heap_top(const swd_heap_t *h);
swd_heap_node_t *swd_heap_pop(swd_heap_t *h);
/// Removes `n` from `h`; a no-op when `n` is in no heap.
void swd_heap_remove(swd_heap_t *h, swd_heap_node_t *n);
/// Restores order after `n`'s key changed (pushes it when absent).
void swd_heap_update(swd_heap_t *h, swd_heap_node_t *n);
/// The i-th node of the array (0 is the top), for walking the first levels.
swd_heap_node_t *swd_heap_at(const swd_heap_t *h, size_t i);

#endif
