// The dashboard page served at `/`: runtime/dashboard.html, embedded in the
// binary at build time by runtime/embed.c (meson's dashboard_dep), so the
// page needs nothing from the network or the file system.
#ifndef SWD_RUNTIME_DASHBOARD_H
#define SWD_RUNTIME_DASHBOARD_H

#include <stddef.h>

/// The page's bytes, NUL-terminated; static, never freed.
extern const char swd_dashboard_html[];
/// The page's length in bytes, not counting the NUL.
extern const size_t swd_dashboard_html_len;

#endif
