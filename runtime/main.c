// swarmd's command line (DESIGN.md §7): serve, check, --version,
// --print-config. Exit codes: 0 fine, 1 runtime failure (bind), 2 bad
// configuration or usage.
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/config.h"
#include "runtime/daemon.h"
#include "runtime/workload.h"

extern char **environ;

static void usage(FILE *out) {
    fprintf(out,
            "usage: swarmd serve [--config FILE] [--listen HOST:PORT] [--http HOST:PORT]\n"
            "                    [--unix PATH] [--ready-file FILE] [--log-level LEVEL]\n"
            "       swarmd run WORKLOAD [--report FILE.json] [--results FILE.jsonl]\n"
            "                  [--listen HOST:PORT] [--http HOST:PORT] [--scale F]\n"
            "       swarmd check FILE\n"
            "       swarmd --print-config [--config FILE]\n"
            "       swarmd --version\n"
            "\n"
            "Environment: SWARMD_LISTEN, SWARMD_HTTP, SWARMD_TOKEN, SWARMD_AGENT_TOKEN,\n"
            "SWARMD_TUNER_MODE, and SWARMD_<SECTION>_<KEY> for any configuration key.\n"
            "Port 0 picks a free port; --ready-file gets {\"rpc\",\"http\",\"pid\"} once bound.\n");
}

typedef struct options {
    const char *config;
    const char *ready_file;
    bool print_config;
    swd_config_overrides_t flags; ///< applied after the file and env
} options_t;

// Parses the flags after the command; 0, or 2 on a usage error.
static int parse_flags(int argc, char **argv, options_t *o) {
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"http", required_argument, NULL, 'H'},
        {"unix", required_argument, NULL, 'u'},
        {"ready-file", required_argument, NULL, 'r'},
        {"log-level", required_argument, NULL, 'L'},
        {"print-config", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch, idx;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, &idx)) != -1) {
        switch (ch) {
        case 'c':
            o->config = optarg;
            break;
        case 'l':
        case 'H':
        case 'u':
        case 'L':
            // Cannot fail: each of these sets a key.
            (void)swd_config_overrides_add(&o->flags, longopts[idx].name, optarg);
            break;
        case 'r':
            o->ready_file = optarg;
            break;
        case 'p':
            o->print_config = true;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "swarmd: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return 0;
}

// File, then environment, then flags; every problem reported, exit 2 on any.
static int load_config(swd_config_t *cfg, const options_t *o) {
    swd_diag_t d;
    swd_diag_init(&d);
    swd_config_init(cfg);
    if (o->config != NULL) {
        swd_config_load_file(cfg, o->config, &d);
    }
    swd_config_load_env(cfg, environ, &d);
    swd_config_overrides_apply(&o->flags, cfg, &d);
    if (d.errors == 0) {
        swd_config_validate(cfg, &d);
    }
    swd_diag_print(&d, stderr);
    int r = d.errors > 0 ? 2 : 0;
    if (r != 0) {
        fprintf(stderr, "swarmd: %zu configuration error%s; not starting\n", d.errors,
                d.errors == 1 ? "" : "s");
    }
    swd_diag_close(&d);
    return r;
}

static int cmd_serve(const options_t *o, swd_config_t *cfg) {
    swd_daemon_t *d = calloc(1, sizeof(*d));
    char err[256] = "";
    int sr = swd_daemon_start(d, cfg, err, sizeof(err));
    if (sr != 0) {
        fprintf(stderr, "swarmd: %s\n", err);
        free(d);
        return sr; // 2: pools it cannot run, refused before anything listened
    }
    if (o->ready_file != NULL && swd_daemon_write_ready_file(d, o->ready_file) != 0) {
        fprintf(stderr, "swarmd: cannot write ready file %s\n", o->ready_file);
        swd_daemon_drain(d);
        d->exit_code = 1;
    }
    int code = swd_daemon_run(d);
    free(d);
    return code;
}

static int cmd_check(const char *file) {
    if (swd_workload_detect(file)) {
        return swd_run_check(file);
    }
    options_t o = {.config = file};
    swd_config_t cfg;
    int r = load_config(&cfg, &o);
    swd_config_close(&cfg);
    if (r == 0) {
        printf("%s: ok\n", file);
    }
    return r;
}

int main(int argc, char **argv) {
    // A peer that leaves mid-write must cost an error on that write, not the
    // whole daemon.
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("swarmd %s\n", SWD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "check") == 0) {
        if (argc != 3) {
            fprintf(stderr, "usage: swarmd check FILE\n");
            return 2;
        }
        return cmd_check(argv[2]);
    }
    if (strcmp(cmd, "run") == 0) {
        return swd_run_main(argc - 1, argv + 1);
    }
    options_t o = {0};
    bool serve = strcmp(cmd, "serve") == 0;
    // `swarmd --print-config [--config FILE]`: the flags start at argv[1].
    int r = serve ? parse_flags(argc - 1, argv + 1, &o) : parse_flags(argc, argv, &o);
    if (r == 0 && !serve && !o.print_config) {
        fprintf(stderr, "swarmd: unknown command '%s'\n", cmd);
        usage(stderr);
        r = 2;
    }
    if (r == 0) {
        swd_config_t cfg;
        r = load_config(&cfg, &o);
        if (r == 0 && o.print_config) {
            swd_config_print(&cfg, stdout);
        } else if (r == 0) {
            r = cmd_serve(&o, &cfg);
        }
        swd_config_close(&cfg);
    }
    swd_config_overrides_close(&o.flags);
    return r;
}
