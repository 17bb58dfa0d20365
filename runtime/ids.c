#include <stdio.h>

#include "runtime/ids.h"

bool swd_id_parse(char prefix, const char *id, size_t len, uint64_t *seq) {
    // 20 digits hold any uint64; more would overflow silently.
    if (len < 3 || len > 21 || id[0] != prefix || id[1] != '-') {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 2; i < len; i++) {
        if (id[i] < '0' || id[i] > '9') {
            return false;
        }
        v = v * 10 + (uint64_t)(id[i] - '0');
    }
    *seq = v;
    return true;
}

void swd_id_format(char prefix, uint64_t seq, char *buf) {
    snprintf(buf, SWD_ID_MAX, "%c-%llu", prefix, (unsigned long long)seq);
}
