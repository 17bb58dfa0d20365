#include <stdlib.h>

#include "proto/alloc.h"
#include "runtime/heap.h"

void swd_heap_init(swd_heap_t *h) {
    h->entries = NULL;
    h->len = 0;
    h->cap = 0;
}

void swd_heap_close(swd_heap_t *h) {
    free(h->entries);
    swd_heap_init(h);
}

void swd_heap_node_init(swd_heap_node_t *n) {
    n->index = SWD_HEAP_NONE;
}

bool swd_heap_contains(const swd_heap_node_t *n) {
    return n->index != SWD_HEAP_NONE;
}

static void place(swd_heap_t *h, size_t i, swd_heap_entry_t e) {
    h->entries[i] = e;
    e.node->index = i;
}

static void sift_up(swd_heap_t *h, size_t i) {
    swd_heap_entry_t e = h->entries[i];
    while (i > 0) {
        size_t parent = (i - 1) / SWD_HEAP_ARITY;
        if (!swd_heap_key_less(e.key, h->entries[parent].key)) {
            break;
        }
        place(h, i, h->entries[parent]);
        i = parent;
    }
    place(h, i, e);
}

static void sift_down(swd_heap_t *h, size_t i) {
    swd_heap_entry_t e = h->entries[i];
    for (;;) {
        size_t first = SWD_HEAP_ARITY * i + 1;
        if (first >= h->len) {
            break;
        }
        size_t last = first + SWD_HEAP_ARITY < h->len ? first + SWD_HEAP_ARITY : h->len;
        size_t child = first;
        for (size_t c = first + 1; c < last; c++) {
            if (swd_heap_key_less(h->entries[c].key, h->entries[child].key)) {
                child = c;
            }
        }
        if (!swd_heap_key_less(h->entries[child].key, e.key)) {
            break;
        }
        place(h, i, h->entries[child]);
        i = child;
    }
    place(h, i, e);
}

void swd_heap_push(swd_heap_t *h, swd_heap_node_t *n, swd_heap_key_t key) {
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->entries = swd_xrealloc(h->entries, h->cap * sizeof(*h->entries));
    }
    place(h, h->len++, (swd_heap_entry_t){.key = key, .node = n});
    sift_up(h, h->len - 1);
}

swd_heap_node_t *swd_heap_top(const swd_heap_t *h) {
    return h->len ? h->entries[0].node : NULL;
}

const swd_heap_entry_t *swd_heap_at(const swd_heap_t *h, size_t i) {
    return i < h->len ? &h->entries[i] : NULL;
}

static bool holds(const swd_heap_t *h, const swd_heap_node_t *n) {
    return n->index < h->len && h->entries[n->index].node == n;
}

void swd_heap_remove(swd_heap_t *h, swd_heap_node_t *n) {
    if (!holds(h, n)) {
        return;
    }
    size_t i = n->index;
    n->index = SWD_HEAP_NONE;
    h->len--;
    if (i == h->len) {
        return;
    }
    swd_heap_node_t *moved = h->entries[h->len].node;
    place(h, i, h->entries[h->len]);
    sift_up(h, i);
    sift_down(h, moved->index);
}

swd_heap_node_t *swd_heap_pop(swd_heap_t *h) {
    swd_heap_node_t *top = swd_heap_top(h);
    if (top != NULL) {
        swd_heap_remove(h, top);
    }
    return top;
}

void swd_heap_update(swd_heap_t *h, swd_heap_node_t *n, swd_heap_key_t key) {
    if (!holds(h, n)) {
        swd_heap_push(h, n, key);
        return;
    }
    h->entries[n->index].key = key;
    sift_up(h, n->index);
    sift_down(h, n->index);
}

void swd_heap_moved(swd_heap_t *h, swd_heap_node_t *n) {
    if (n->index < h->len) {
        h->entries[n->index].node = n;
    }
}
