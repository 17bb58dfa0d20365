// Task and agent ids: opaque strings to clients ("t-42", "a-7"), a prefix
// letter and a sequence number inside, so lookups are a hash of the number.
#ifndef SWD_RUNTIME_IDS_H
#define SWD_RUNTIME_IDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/// Room for any id, NUL included.
#define SWD_ID_MAX 24

/// Reads "<prefix>-<digits>" into `*seq`; false for anything else.
bool swd_id_parse(char prefix, const char *id, size_t len, uint64_t *seq);
/// Writes "<prefix>-<seq>" into `buf` (SWD_ID_MAX bytes).
void swd_id_format(char prefix, uint64_t seq, char *buf);

#endif
