#include <stdlib.h>

#include "proto/alloc.h"
#include "runtime/heap.h"

void swd_heap_init(swd_heap_t *h, swd_heap_less_fn less) {
    h->nodes = NULL;
    h->len = 0;
    h->cap = 0;
    h->less = less;
}

void swd_heap_close(swd_heap_t *h) {
    free(h->nodes);
    h->nodes = NULL;
    h->len = 0;
    h->cap = 0;
}

void swd_heap_node_init(swd_heap_node_t *n) {
    n->index = SWD_HEAP_NONE;
}

bool swd_heap_contains(const swd_heap_node_t *n) {
    return n->index != SWD_HEAP_NONE;
}

static void place(swd_heap_t *h, size_t i, swd_heap_node_t *n) {
    h->nodes[i] = n;
    n->index = i;
}

static void sift_up(swd_heap_t *h, size_t i) {
    swd_heap_node_t *n = h->nodes[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!h->less(n, h->nodes[parent])) {
            break;
        }
        place(h, i, h->nodes[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void sift_down(swd_heap_t *h, size_t i) {
    swd_heap_node_t *n = h->nodes[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len) {
            break;
        }
        if (child + 1 < h->len && h->less(h->nodes[child + 1], h->nodes[child])) {
            child++;
        }
        if (!h->less(h->nodes[child], n)) {
            break;
        }
        place(h, i, h->nodes[child]);
        i = child;
    }
    place(h, i, n);
}

void swd_heap_push(swd_heap_t *h, swd_heap_node_t *n) {
    if (h->len == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->nodes = swd_xrealloc(h->nodes, h->cap * sizeof(*h->nodes));
    }
    place(h, h->len++, n);
    sift_up(h, h->len - 1);
}

swd_heap_node_t *swd_heap_top(const swd_heap_t *h) {
    return h->len ? h->nodes[0] : NULL;
}

swd_heap_node_t *swd_heap_at(const swd_heap_t *h, size_t i) {
    return i < h->len ? h->nodes[i] : NULL;
}

void swd_heap_remove(swd_heap_t *h, swd_heap_node_t *n) {
    size_t i = n->index;
    if (i == SWD_HEAP_NONE || i >= h->len || h->nodes[i] != n) {
        return;
    }
    n->index = SWD_HEAP_NONE;
    h->len--;
    if (i == h->len) {
        return;
    }
    swd_heap_node_t *moved = h->nodes[h->len];
    place(h, i, moved);
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

void swd_heap_update(swd_heap_t *h, swd_heap_node_t *n) {
    if (!swd_heap_contains(n)) {
        swd_heap_push(h, n);
        return;
    }
    sift_up(h, n->index);
    sift_down(h, n->index);
}
