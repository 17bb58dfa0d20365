// Task and agent ids (runtime/ids.h): "t-42" and "a-7" stand for sequence
// numbers; each id names one number and each number has one id, so a client
// cannot reach a task under a second spelling ("t-042").
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "runtime/ids.h"

static bool parse(char prefix, const char *id, uint64_t *seq) {
    return swd_id_parse(prefix, id, strlen(id), seq);
}

Test(ids, format_then_parse_round_trips) {
    const uint64_t seqs[] = {1, 9, 10, 42, 1000000, UINT64_MAX};
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        char buf[SWD_ID_MAX];
        uint64_t back = 0;
        swd_id_format('t', seqs[i], buf);
        cr_assert(parse('t', buf, &back), "%s does not parse", buf);
        cr_assert_eq(back, seqs[i]);
    }
    char buf[SWD_ID_MAX];
    swd_id_format('a', 7, buf);
    cr_assert_str_eq(buf, "a-7");
    swd_id_format('t', UINT64_MAX, buf);
    cr_assert_str_eq(buf, "t-18446744073709551615");
}

Test(ids, other_spellings_are_not_ids) {
    const char *bad[] = {
        "t-",
        "t-042",
        "t-0",
        "t-+1",
        "t--1",
        "t-1x",
        "t- 1",
        "a-1",
        "t1",
        "-1",
        "t-18446744073709551616",  // UINT64_MAX + 1
        "t-99999999999999999999",  // 20 digits, too big
        "t-100000000000000000000", // 21 digits
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t seq = 12345;
        cr_assert_not(parse('t', bad[i], &seq), "\"%s\" was taken as a task id", bad[i]);
        cr_assert_eq(seq, 12345, "\"%s\" changed the output", bad[i]);
    }
}
