#include <string.h>

#include "runtime/ids.h"

bool swd_id_parse(char prefix, const char *id, size_t len, uint64_t *seq) {
    // Only the form swd_id_format() writes: no sign, no leading zero, no
    // value past UINT64_MAX, so each id names one seq and each seq one id.
    if (len < 3 || len > 22 || id[0] != prefix || id[1] != '-' || id[2] == '0') {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 2; i < len; i++) {
        if (id[i] < '0' || id[i] > '9') {
            return false;
        }
        uint64_t d = (uint64_t)(id[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *seq = v;
    return true;
}

// By hand rather than snprintf(): this runs for every attempt dispatched.
void swd_id_format(char prefix, uint64_t seq, char *buf) {
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq > 0);
    buf[0] = prefix;
    buf[1] = '-';
    for (size_t i = 0; i < n; i++) {
        buf[2 + i] = digits[n - 1 - i];
    }
    buf[2 + n] = '\0';
}
