// The standard process_* metrics (the names every Prometheus client library
// exports), read from /proc/self at each render by a collect callback.
// Linux only: where a file cannot be read the gauges keep their last values.
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "runtime/metrics.h"

/// What one read of /proc/self/stat yields.
typedef struct proc_stat {
    double cpu_seconds;   ///< utime + stime
    double start_ticks;   ///< clock ticks after boot
    double virtual_bytes; ///< vsize
    double resident_bytes;
} proc_stat_t;

/// Reads the whole of a small file into `buf` (NUL-terminated); its length,
/// or -1.
static ssize_t read_small_file(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    size_t len = 0;
    while (len + 1 < cap) {
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return (ssize_t)len;
}

/// Parses /proc/self/stat. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from after its last ')'.
static bool read_proc_stat(proc_stat_t *out) {
    char buf[4096];
    if (read_small_file("/proc/self/stat", buf, sizeof buf) <= 0) {
        return false;
    }
    char *p = strrchr(buf, ')');
    if (p == NULL) {
        return false;
    }
    p++;
    // Fields 3.. follow; we need 14 utime, 15 stime, 22 starttime, 23
    // vsize, 24 rss (in pages).
    unsigned long long f[25] = {0};
    for (int field = 3; field <= 24; field++) {
        while (*p == ' ') {
            p++;
        }
        if (*p == '\0') {
            return false;
        }
        char *end;
        f[field] = strtoull(p, &end, 10); // field 3 (state) is a letter: 0
        p = end;
        while (*p != ' ' && *p != '\0') {
            p++;
        }
    }
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (ticks <= 0 || page <= 0) {
        return false;
    }
    out->cpu_seconds = (double)(f[14] + f[15]) / (double)ticks;
    out->start_ticks = (double)f[22];
    out->virtual_bytes = (double)f[23];
    out->resident_bytes = (double)f[24] * (double)page;
    return true;
}

/// Entries of /proc/self/fd (the directory's own descriptor included, as
/// other client libraries count it), or -1.
static int count_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) {
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n;
}

/// The system's boot time in seconds since the epoch (`btime` of
/// /proc/stat), or -1.
static double boot_time(void) {
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL) {
        return -1;
    }
    double btime = -1;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) >= 0) {
        unsigned long long v;
        if (sscanf(line, "btime %llu", &v) == 1) {
            btime = (double)v;
            break;
        }
    }
    free(line);
    fclose(f);
    return btime;
}

static void set_single(swd_metrics_t *m, const char *name, double v) {
    swd_gauge_set(swd_metric_single(swd_metrics_find(m, name)), v);
}

static void process_collect(swd_metrics_t *m, void *data) {
    (void)data;
    proc_stat_t st;
    if (read_proc_stat(&st)) {
        set_single(m, "process_resident_memory_bytes", st.resident_bytes);
        set_single(m, "process_virtual_memory_bytes", st.virtual_bytes);
        // A counter cannot be set; it only follows the kernel's total.
        swd_metric_t *cpu = swd_metric_single(swd_metrics_find(m, "process_cpu_seconds_total"));
        swd_counter_add(cpu, st.cpu_seconds - swd_metric_value(cpu));
    }
    int fds = count_open_fds();
    if (fds >= 0) {
        set_single(m, "process_open_fds", fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        set_single(m, "process_max_fds", (double)rl.rlim_cur);
    }
}

void swd_metrics_add_process(swd_metrics_t *m) {
    if (m == NULL || swd_metrics_find(m, "process_start_time_seconds") != NULL) {
        return;
    }
    swd_metrics_counter(m, "process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.", 0, NULL);
    swd_metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", 0, NULL);
    swd_metrics_gauge(m, "process_max_fds", "Maximum number of open file descriptors.", 0, NULL);
    swd_metrics_gauge(m, "process_virtual_memory_bytes", "Virtual memory size in bytes.", 0, NULL);
    swd_metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.", 0,
                      NULL);
    swd_metrics_gauge(m, "process_start_time_seconds",
                      "Start time of the process since unix epoch in seconds.", 0, NULL);
    // The start time never changes: read it once, here.
    proc_stat_t st;
    double btime = boot_time();
    long ticks = sysconf(_SC_CLK_TCK);
    if (btime >= 0 && ticks > 0 && read_proc_stat(&st)) {
        set_single(m, "process_start_time_seconds", btime + st.start_ticks / (double)ticks);
    } else {
        set_single(m, "process_start_time_seconds", (double)time(NULL));
    }
    swd_metrics_on_collect(m, process_collect, NULL);
}
