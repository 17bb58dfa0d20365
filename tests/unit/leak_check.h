// LeakSanitizer check for the end of a unit test that allocates.
//
// Criterion runs each test in a forked worker, whose exit-time LeakSanitizer
// report would be lost instead of failing the test. So a test that allocates
// ends with ASSERT_NO_LEAKS(), which runs a recoverable leak check while the
// test is still running and fails the test on any leak (CONVENTIONS.md,
// Tests). Without AddressSanitizer the check is a no-op. Every unit test file
// includes this one copy.
#ifndef SWD_TESTS_UNIT_LEAK_CHECK_H
#define SWD_TESTS_UNIT_LEAK_CHECK_H

#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#define SWD_TEST_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWD_TEST_HAVE_ASAN 1
#endif
#endif

#ifdef SWD_TEST_HAVE_ASAN
#include <sanitizer/lsan_interface.h>
#define ASSERT_NO_LEAKS()                                                                          \
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "LeakSanitizer found leaks")
#else
#define ASSERT_NO_LEAKS() ((void)0)
#endif

#endif
