// Allocation that cannot fail: running out of memory aborts with a message
// (CONVENTIONS.md). Sizes read from the network are bounded before they get
// here.
#ifndef SWD_PROTO_ALLOC_H
#define SWD_PROTO_ALLOC_H

#include <stddef.h>

/// Reports that `n` bytes could not be had, and aborts.
_Noreturn void swd_out_of_memory(size_t n);
void *swd_xmalloc(size_t n);
void *swd_xcalloc(size_t count, size_t n);
void *swd_xrealloc(void *p, size_t n);
char *swd_xstrdup(const char *s);
char *swd_xstrndup(const char *s, size_t n);
/// A freshly allocated printf-style string.
char *swd_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
