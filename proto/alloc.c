#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/alloc.h"

_Noreturn void swd_out_of_memory(size_t n) {
    fprintf(stderr, "swarmd: out of memory allocating %zu bytes\n", n);
    abort();
}

static void *check(void *p, size_t n) {
    if (p == NULL && n != 0) {
        swd_out_of_memory(n);
    }
    return p;
}

void *swd_xmalloc(size_t n) {
    return check(malloc(n ? n : 1), n);
}

void *swd_xcalloc(size_t count, size_t n) {
    return check(calloc(count ? count : 1, n ? n : 1), count * n);
}

void *swd_xrealloc(void *p, size_t n) {
    return check(realloc(p, n ? n : 1), n);
}

char *swd_xstrdup(const char *s) {
    return swd_xstrndup(s, strlen(s));
}

char *swd_xstrndup(const char *s, size_t n) {
    char *d = swd_xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *swd_xasprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    check(n < 0 ? NULL : s, 1);
    return s;
}
