// swarmctl: the command-line client of swarmd (DESIGN.md §7).
//
//   argv ──global options──▶ commands[] lookup ──▶ cmd_*(): parse its own
//   arguments (usage errors exit 2 before any connection) ──▶ ctl_call()
//   (connects lazily, swarm.hello when a token is set) ──▶ print human
//   text, or the result as JSON with --json.
//
// `logs` talks to the HTTP status endpoint (--http) through libcurl; every
// other command speaks msgpack-RPC (--addr).
//
// Exit status: 0 success, 1 the server answered with an error, 2 usage or
// connection errors.
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "proto/alloc.h"
#include "proto/buf.h"
#include "proto/encoder.h"
#include "proto/errors.h"
#include "proto/json.h"

enum {
    EXIT_OK = 0,
    EXIT_ANSWER = 1,
    EXIT_USAGE = 2,
    PARSED = -1, // an argument was consumed; keep parsing
};

#define DEFAULT_ADDR "127.0.0.1:7420"
#define DEFAULT_HTTP "127.0.0.1:7421"
#define CONNECT_TIMEOUT_MS 5000
#define CALL_TIMEOUT_MS 30000
#define WAIT_MAX_MS 300000 // task.wait clamps larger timeouts (§2.1)
#define BATCH_CHUNK 1000

typedef struct ctl {
    const char *addr;
    const char *http; // the HTTP status endpoint, HOST:PORT
    const char *token;
    bool json;
    const char *cmd; // the running command's name, for messages
    swd_client_t *client;
} ctl_t;

typedef int (*cmd_fn)(ctl_t *ctl, int argc, char **argv);

typedef struct command {
    const char *name;
    const char *synopsis;
    const char *summary;
    const char *details; // per-command help, after the synopsis; may be NULL
    cmd_fn run;
} command_t;

static const command_t *find_command(const char *name);
static void print_command_help(const command_t *cmd);

static volatile sig_atomic_t interrupted;

// ---------------------------------------------------------------------------
// Messages

__attribute__((format(printf, 2, 3))) static int usage_error(const ctl_t *ctl, const char *fmt,
                                                             ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "swarmctl: ");
    if (ctl->cmd != NULL) {
        fprintf(stderr, "%s: ", ctl->cmd);
    }
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (ctl->cmd != NULL) {
        fprintf(stderr, "\nTry 'swarmctl %s --help'.\n", ctl->cmd);
    } else {
        fprintf(stderr, "\nTry 'swarmctl --help'.\n");
    }
    return EXIT_USAGE;
}

static int conn_error(const ctl_t *ctl, const char *what) {
    if (ctl->cmd != NULL) {
        fprintf(stderr, "swarmctl: %s: %s\n", ctl->cmd, what);
    } else {
        fprintf(stderr, "swarmctl: %s\n", what);
    }
    return EXIT_USAGE;
}

static void print_error_answer(const swd_reply_t *reply) {
    fprintf(stderr, "swarmctl: %s: %s\n", reply->code, reply->message);
}

// ---------------------------------------------------------------------------
// Argument helpers

// Matches option `name` at argv[*i], as "--name VALUE" or "--name=VALUE":
// PARSED with `*val` set, 0 when argv[*i] is another argument, EXIT_USAGE.
static int take_value(const ctl_t *ctl, int argc, char **argv, int *i, const char *name,
                      const char **val) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0) {
        return 0;
    }
    if (a[n] == '=') {
        *val = a + n + 1;
        return PARSED;
    }
    if (a[n] != '\0') {
        return 0;
    }
    if (*i + 1 >= argc) {
        return usage_error(ctl, "%s needs a value", name);
    }
    *i += 1;
    *val = argv[*i];
    return PARSED;
}

static int parse_u64(const ctl_t *ctl, const char *opt, const char *text, uint64_t *out) {
    if (text == NULL || text[0] < '0' || text[0] > '9') {
        return usage_error(ctl, "%s needs a non-negative integer", opt);
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (*end != '\0' || errno != 0) {
        return usage_error(ctl, "%s: '%s' is not a non-negative integer", opt, text);
    }
    *out = v;
    return PARSED;
}

static bool one_of(const char *s, const char *const *names) {
    for (size_t i = 0; names[i] != NULL; i++) {
        if (strcmp(s, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

// Options every command accepts anywhere, and positionals. PARSED, EXIT_OK
// after printing the command's help, or EXIT_USAGE.
static int take_common(ctl_t *ctl, int argc, char **argv, int *i, const char **pos, size_t maxpos,
                       size_t *npos) {
    const char *a = argv[*i];
    const char *v = NULL;
    int r;
    if (strcmp(a, "--json") == 0) {
        ctl->json = true;
        return PARSED;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        print_command_help(find_command(ctl->cmd));
        return EXIT_OK;
    }
    if ((r = take_value(ctl, argc, argv, i, "--addr", &v)) != 0) {
        ctl->addr = v;
        return r;
    }
    if ((r = take_value(ctl, argc, argv, i, "--token", &v)) != 0) {
        ctl->token = v;
        return r;
    }
    if ((r = take_value(ctl, argc, argv, i, "--http", &v)) != 0) {
        ctl->http = v;
        return r;
    }
    if (a[0] == '-' && a[1] != '\0' && strcmp(a, "--") != 0) {
        return usage_error(ctl, "unknown option '%s'", a);
    }
    if (*npos >= maxpos) {
        return usage_error(ctl, "unexpected argument '%s'", a);
    }
    pos[(*npos)++] = a;
    return PARSED;
}

// ---------------------------------------------------------------------------
// Talking to swarmd

static int pack_hello(msgpack_packer *pk, void *data) {
    msgpack_pack_map(pk, 3);
    swd_pack_kv_str(pk, "client", "swarmctl");
    swd_pack_kv_str(pk, "version", SWD_VERSION);
    swd_pack_kv_str(pk, "token", data);
    return 0;
}

// Connects, then says hello when there is a token: EXIT_OK, EXIT_ANSWER
// with `reply` holding hello's error answer, or EXIT_USAGE (printed).
static int ctl_connect(ctl_t *ctl, swd_reply_t *reply) {
    char err[512];
    if (swd_client_connect(ctl->addr, CONNECT_TIMEOUT_MS, &ctl->client, err, sizeof(err)) != 0) {
        return conn_error(ctl, err);
    }
    if (ctl->token == NULL) {
        return EXIT_OK;
    }
    int r = swd_client_call(ctl->client, "swarm.hello", pack_hello, (void *)ctl->token, reply,
                            CALL_TIMEOUT_MS);
    if (r != 0) {
        return conn_error(ctl, swd_client_errmsg(ctl->client));
    }
    return reply->is_error ? EXIT_ANSWER : EXIT_OK;
}

// Calls `method`, connecting first if needed: EXIT_OK with `reply` holding
// a result, EXIT_ANSWER with `reply` holding an error answer (not printed),
// EXIT_USAGE after printing a connection error.
static int ctl_request(ctl_t *ctl, const char *method, swd_client_pack_cb pack, void *data,
                       swd_reply_t *reply, int timeout_ms) {
    if (ctl->client == NULL) {
        int r = ctl_connect(ctl, reply);
        if (r != EXIT_OK) {
            return r;
        }
    }
    int r = swd_client_call(ctl->client, method, pack, data, reply, timeout_ms);
    if (r != 0) {
        return conn_error(ctl, swd_client_errmsg(ctl->client));
    }
    return reply->is_error ? EXIT_ANSWER : EXIT_OK;
}

// ctl_request() that prints an error answer.
static int ctl_call(ctl_t *ctl, const char *method, swd_client_pack_cb pack, void *data,
                    swd_reply_t *reply, int timeout_ms) {
    int r = ctl_request(ctl, method, pack, data, reply, timeout_ms);
    if (r == EXIT_ANSWER) {
        print_error_answer(reply);
    }
    return r;
}

typedef struct kv_str {
    const char *key;
    const char *value;
} kv_str_t;

// Packs a map of the pairs whose value is set.
static int pack_kv_strs(msgpack_packer *pk, void *data) {
    const kv_str_t *kv = data;
    uint32_t n = 0;
    for (const kv_str_t *p = kv; p->key != NULL; p++) {
        n += p->value != NULL;
    }
    msgpack_pack_map(pk, n);
    for (const kv_str_t *p = kv; p->key != NULL; p++) {
        if (p->value != NULL) {
            swd_pack_kv_str(pk, p->key, p->value);
        }
    }
    return 0;
}

// ---------------------------------------------------------------------------
// Output

static void print_json(const json_t *j, bool compact) {
    size_t flags = JSON_ENCODE_ANY | swd_json_real_flags(j);
    flags |= compact ? JSON_COMPACT : JSON_INDENT(2);
    json_dumpf(j, stdout, flags);
    fputc('\n', stdout);
}

static void print_obj_json(const msgpack_object *o, bool compact) {
    json_t *j = swd_json_from_msgpack(o);
    print_json(j ? j : json_null(), compact);
    json_decref(j);
}

// A value as text for tables and key: value lines; the caller frees it.
static char *value_text(const msgpack_object *o) {
    switch (o == NULL ? MSGPACK_OBJECT_NIL : o->type) {
    case MSGPACK_OBJECT_NIL:
        return swd_xstrdup("-");
    case MSGPACK_OBJECT_BOOLEAN:
        return swd_xstrdup(o->via.boolean ? "true" : "false");
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return swd_xasprintf("%" PRIu64, o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return swd_xasprintf("%" PRId64, o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return swd_xasprintf("%.6g", o->via.f64);
    default:
        break;
    }
    json_t *j = swd_json_from_msgpack(o);
    if (json_is_string(j)) {
        char *s = swd_xstrdup(json_string_value(j));
        json_decref(j);
        return s;
    }
    char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT | swd_json_real_flags(j));
    json_decref(j);
    char *out = swd_xstrdup(s ? s : "null");
    free(s);
    return out;
}

static const msgpack_object *field(const msgpack_object *map, const char *key) {
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP) {
        return NULL;
    }
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0) {
            return &map->via.map.ptr[i].val;
        }
    }
    return NULL;
}

// A string field as a fresh NUL-terminated copy, or NULL.
static char *field_str(const msgpack_object *map, const char *key) {
    const msgpack_object *v = field(map, key);
    if (v == NULL || v->type != MSGPACK_OBJECT_STR) {
        return NULL;
    }
    return swd_xstrndup(v->via.str.size ? v->via.str.ptr : "", v->via.str.size);
}

// "key: value" per entry; with `flatten`, nested maps become "outer.inner".
static void print_kv(const msgpack_object *map, const char *prefix, bool flatten) {
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP) {
        char *s = value_text(map);
        printf("%s\n", s);
        free(s);
        return;
    }
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        char *k = value_text(&map->via.map.ptr[i].key);
        char *key = prefix ? swd_xasprintf("%s.%s", prefix, k) : swd_xstrdup(k);
        const msgpack_object *v = &map->via.map.ptr[i].val;
        if (flatten && v->type == MSGPACK_OBJECT_MAP && v->via.map.size > 0) {
            print_kv(v, key, true);
        } else {
            char *s = value_text(v);
            printf("%s: %s\n", key, s);
            free(s);
        }
        free(k);
        free(key);
    }
}

static void print_result(const ctl_t *ctl, const msgpack_object *result, bool flatten) {
    if (ctl->json) {
        print_obj_json(result, false);
    } else {
        print_kv(result, NULL, flatten);
    }
}

// An aligned text table; every cell is owned by the table.
typedef struct table {
    size_t ncols;
    size_t nrows;
    size_t cap;
    char **cells; // row-major
} table_t;

static void table_init(table_t *t, const char *const *header, size_t ncols) {
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->cap = 16;
    t->cells = swd_xcalloc(t->cap * ncols, sizeof(char *));
    for (size_t c = 0; c < ncols; c++) {
        t->cells[c] = swd_xstrdup(header[c]);
    }
    t->nrows = 1;
}

// Appends a row, taking ownership of the `ncols` strings in `row`.
static void table_add(table_t *t, char **row) {
    if (t->nrows == t->cap) {
        t->cap *= 2;
        t->cells = swd_xrealloc(t->cells, t->cap * t->ncols * sizeof(char *));
    }
    memcpy(t->cells + t->nrows * t->ncols, row, t->ncols * sizeof(char *));
    t->nrows++;
}

static void table_free(table_t *t) {
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }
    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
}

static void table_print_free(table_t *t) {
    size_t *width = swd_xcalloc(t->ncols, sizeof(size_t));
    for (size_t i = 0; i < t->nrows * t->ncols; i++) {
        size_t n = strlen(t->cells[i]);
        width[i % t->ncols] = n > width[i % t->ncols] ? n : width[i % t->ncols];
    }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            if (c + 1 < t->ncols) {
                printf("%-*s  ", (int)width[c], s);
            } else {
                printf("%s\n", s);
            }
        }
    }
    table_free(t);
    free(width);
}

// ---------------------------------------------------------------------------
// submit

static const char *const priorities[] = {"critical", "high", "medium", "low", NULL};
static const char *const task_states[] = {"queued", "deferred",  "running", "succeeded",
                                          "failed", "cancelled", NULL};
static const char *const topics_all[] = {"task",  "log",     "tuner", "healing",
                                         "agent", "scaling", NULL};

typedef struct submit_args {
    const char *type;
    json_t *payload; // NULL when not given
    const char *priority;
    const char *key;
    const char *after; // comma-separated ids
    uint64_t num[3];   // estimated_tokens, timeout_ms, max_retries
    bool has_num[3];
    const char **labels; // "k=v", borrowed from argv
    size_t nlabels;
    bool wait;
} submit_args_t;

static const char *const submit_num_opts[] = {"--tokens", "--timeout-ms", "--retries"};
static const char *const submit_num_keys[] = {"estimated_tokens", "timeout_ms", "max_retries"};

static void pack_after(msgpack_packer *pk, const char *list) {
    uint32_t n = 1;
    for (const char *p = list; *p; p++) {
        n += *p == ',';
    }
    swd_pack_str(pk, "after");
    msgpack_pack_array(pk, n);
    for (const char *p = list;; p++) {
        const char *end = strchr(p, ',');
        swd_pack_strn(pk, p, end ? (size_t)(end - p) : strlen(p));
        if (end == NULL) {
            break;
        }
        p = end;
    }
}

static int pack_submit(msgpack_packer *pk, void *data) {
    const submit_args_t *a = data;
    uint32_t n = 1 + (a->payload != NULL) + (a->priority != NULL) + (a->key != NULL) +
                 (a->after != NULL) + (a->nlabels > 0);
    for (int i = 0; i < 3; i++) {
        n += a->has_num[i];
    }
    msgpack_pack_map(pk, n);
    swd_pack_kv_str(pk, "type", a->type);
    if (a->payload != NULL) {
        swd_pack_str(pk, "payload");
        int r = swd_json_pack(pk, a->payload);
        if (r != 0) {
            return r;
        }
    }
    if (a->priority != NULL) {
        swd_pack_kv_str(pk, "priority", a->priority);
    }
    for (int i = 0; i < 3; i++) {
        if (a->has_num[i]) {
            swd_pack_kv_u64(pk, submit_num_keys[i], a->num[i]);
        }
    }
    if (a->key != NULL) {
        swd_pack_kv_str(pk, "key", a->key);
    }
    if (a->after != NULL) {
        pack_after(pk, a->after);
    }
    if (a->nlabels > 0) {
        swd_pack_str(pk, "labels");
        msgpack_pack_map(pk, a->nlabels);
        for (size_t i = 0; i < a->nlabels; i++) {
            const char *eq = strchr(a->labels[i], '=');
            swd_pack_strn(pk, a->labels[i], (size_t)(eq - a->labels[i]));
            swd_pack_str(pk, eq + 1);
        }
    }
    return 0;
}

// Checks one submit option's value: PARSED or EXIT_USAGE.
static int check_submit_value(const ctl_t *ctl, submit_args_t *a, const char *opt, const char *v) {
    if (strcmp(opt, "--payload") == 0) {
        json_error_t je;
        json_decref(a->payload);
        a->payload = json_loads(v, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (a->payload == NULL) {
            return usage_error(ctl, "--payload is not JSON: line %d, column %d: %s", je.line,
                               je.column, je.text);
        }
    } else if (strcmp(opt, "--priority") == 0) {
        if (!one_of(v, priorities)) {
            return usage_error(ctl, "--priority must be critical, high, medium or low");
        }
        a->priority = v;
    } else if (strcmp(opt, "--key") == 0) {
        a->key = v;
    } else if (strcmp(opt, "--after") == 0) {
        if (v[0] == '\0' || v[0] == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,")) {
            return usage_error(ctl, "--after takes task ids separated by commas");
        }
        a->after = v;
    } else if (strcmp(opt, "--label") == 0) {
        const char *eq = strchr(v, '=');
        if (eq == NULL || eq == v) {
            return usage_error(ctl, "--label takes KEY=VALUE, not '%s'", v);
        }
        a->labels[a->nlabels++] = v;
    }
    return PARSED;
}

static int parse_submit(ctl_t *ctl, int argc, char **argv, submit_args_t *a) {
    static const char *const value_opts[] = {"--payload", "--priority", "--key", "--after",
                                             "--label"};
    a->labels = swd_xcalloc((size_t)argc + 1, sizeof(char *));
    size_t npos = 0;
    for (int i = 0; i < argc; i++) {
        int r = 0;
        const char *v = NULL;
        if (strcmp(argv[i], "--wait") == 0) {
            a->wait = true;
            continue;
        }
        for (size_t k = 0; r == 0 && k < sizeof(value_opts) / sizeof(value_opts[0]); k++) {
            r = take_value(ctl, argc, argv, &i, value_opts[k], &v);
            r = r == PARSED ? check_submit_value(ctl, a, value_opts[k], v) : r;
        }
        for (int k = 0; r == 0 && k < 3; k++) {
            r = take_value(ctl, argc, argv, &i, submit_num_opts[k], &v);
            r = r == PARSED ? parse_u64(ctl, submit_num_opts[k], v, &a->num[k]) : r;
            a->has_num[k] |= r == PARSED;
        }
        r = r == 0 ? take_common(ctl, argc, argv, &i, &a->type, 1, &npos) : r;
        if (r != PARSED) {
            return r;
        }
    }
    if (a->type == NULL) {
        return usage_error(ctl, "missing the task TYPE");
    }
    return PARSED;
}

static bool state_is_terminal(const char *s) {
    return s != NULL &&
           (strcmp(s, "succeeded") == 0 || strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0);
}

typedef struct wait_args {
    const char *task_id;
    uint64_t timeout_ms;
} wait_args_t;

static int pack_wait(msgpack_packer *pk, void *data) {
    const wait_args_t *w = data;
    msgpack_pack_map(pk, 2);
    swd_pack_kv_str(pk, "task_id", w->task_id);
    swd_pack_kv_u64(pk, "timeout_ms", w->timeout_ms);
    return 0;
}

// Waits for `id` to end, in task.wait rounds of the longest timeout, then
// prints the Task.
static int wait_terminal(ctl_t *ctl, const char *id) {
    wait_args_t w = {.task_id = id, .timeout_ms = WAIT_MAX_MS};
    for (;;) {
        swd_reply_t reply;
        int r = ctl_call(ctl, "task.wait", pack_wait, &w, &reply, WAIT_MAX_MS + CALL_TIMEOUT_MS);
        if (r != EXIT_OK) {
            return r;
        }
        char *state = field_str(reply.result, "state");
        bool done = state_is_terminal(state);
        free(state);
        if (done) {
            print_result(ctl, reply.result, false);
            return EXIT_OK;
        }
    }
}

static int cmd_submit(ctl_t *ctl, int argc, char **argv) {
    submit_args_t a;
    memset(&a, 0, sizeof(a));
    int r = parse_submit(ctl, argc, argv, &a);
    if (r == PARSED) {
        swd_reply_t reply;
        r = ctl_call(ctl, "task.submit", pack_submit, &a, &reply, CALL_TIMEOUT_MS);
        char *id = r == EXIT_OK ? field_str(reply.result, "task_id") : NULL;
        if (r == EXIT_OK && a.wait && id != NULL) {
            r = wait_terminal(ctl, id);
        } else if (r == EXIT_OK) {
            print_result(ctl, reply.result, false);
        }
        free(id);
    }
    json_decref(a.payload);
    free(a.labels);
    return r;
}

// ---------------------------------------------------------------------------
// submit-batch

typedef struct batch {
    const char *file;
    swd_buf_t packed; // every task's params map, back to back
    size_t *off;      // task i is packed[off[i] .. off[i+1])
    size_t *line;     // task i came from this line of the file
    size_t n;
    size_t cap;
    size_t chunk_start; // the chunk being sent
    size_t chunk_len;
} batch_t;

static void batch_add(batch_t *b, const json_t *task, size_t line) {
    if (b->n + 1 >= b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1024;
        b->off = swd_xrealloc(b->off, b->cap * sizeof(size_t));
        b->line = swd_xrealloc(b->line, b->cap * sizeof(size_t));
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b->packed, swd_buf_write_cb);
    b->off[b->n] = b->packed.len;
    b->line[b->n] = line;
    swd_json_pack(&pk, task);
    b->n++;
    b->off[b->n] = b->packed.len;
}

static bool blank(const char *s) {
    return s[strspn(s, " \t\r\n")] == '\0';
}

// Parses one line into the batch: true when it is fine (or blank).
static bool batch_line(const ctl_t *ctl, batch_t *b, const char *text, size_t lineno, size_t *bad) {
    if (blank(text)) {
        return true;
    }
    json_error_t je;
    json_t *task = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    const char *why = task == NULL ? je.text : NULL;
    if (task != NULL && !json_is_object(task)) {
        why = "a task must be a JSON object";
    } else if (task != NULL && !json_is_string(json_object_get(task, "type"))) {
        why = "a task needs a string \"type\"";
    }
    if (why != NULL && ++*bad <= 20 && task == NULL) {
        fprintf(stderr, "swarmctl: %s: %s:%zu:%d: not JSON: %s\n", ctl->cmd, b->file, lineno,
                je.column, why);
    } else if (why != NULL && *bad <= 20) {
        fprintf(stderr, "swarmctl: %s: %s:%zu: %s\n", ctl->cmd, b->file, lineno, why);
    }
    if (why == NULL) {
        batch_add(b, task, lineno);
    }
    json_decref(task);
    return why == NULL;
}

static int batch_read(const ctl_t *ctl, batch_t *b) {
    FILE *f = strcmp(b->file, "-") == 0 ? stdin : fopen(b->file, "r");
    if (f == NULL) {
        return usage_error(ctl, "cannot open %s: %s", b->file, strerror(errno));
    }
    char *text = NULL;
    size_t cap = 0;
    size_t lineno = 0;
    size_t bad = 0;
    while (getline(&text, &cap, f) >= 0) {
        batch_line(ctl, b, text, ++lineno, &bad);
    }
    bool ioerr = ferror(f) != 0;
    free(text);
    if (f != stdin) {
        fclose(f);
    }
    if (ioerr) {
        return usage_error(ctl, "reading %s failed", b->file);
    }
    if (bad > 20) {
        fprintf(stderr, "swarmctl: %s: ... and %zu more bad lines\n", ctl->cmd, bad - 20);
    }
    if (bad > 0) {
        fprintf(stderr, "swarmctl: %s: %zu bad line%s in %s; nothing submitted\n", ctl->cmd, bad,
                bad == 1 ? "" : "s", b->file);
        return EXIT_USAGE;
    }
    if (b->n == 0) {
        return usage_error(ctl, "no tasks in %s", b->file);
    }
    return PARSED;
}

// Packs {tasks: [...]} for the current chunk from the pre-packed maps.
static int pack_chunk(msgpack_packer *pk, void *data) {
    const batch_t *b = data;
    msgpack_pack_map(pk, 1);
    swd_pack_str(pk, "tasks");
    msgpack_pack_array(pk, b->chunk_len);
    size_t from = b->off[b->chunk_start];
    size_t to = b->off[b->chunk_start + b->chunk_len];
    return pk->callback(pk->data, b->packed.data + from, to - from) == 0 ? 0 : -EIO;
}

// Reports a refused chunk, naming the file line of the bad element.
static void batch_error(const ctl_t *ctl, const batch_t *b, const swd_reply_t *reply) {
    const msgpack_object *idx = field(reply->data, "index");
    if (idx != NULL && idx->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
        idx->via.u64 < b->chunk_len) {
        fprintf(stderr, "swarmctl: %s: %s:%zu: %s\n", reply->code, b->file,
                b->line[b->chunk_start + idx->via.u64], reply->message);
    } else {
        print_error_answer(reply);
    }
    if (b->chunk_start > 0) {
        fprintf(stderr, "swarmctl: %s: the first %zu tasks (up to line %zu) were submitted\n",
                ctl->cmd, b->chunk_start, b->line[b->chunk_start - 1]);
    }
}

static int batch_send(ctl_t *ctl, batch_t *b, json_t *ids) {
    for (b->chunk_start = 0; b->chunk_start < b->n; b->chunk_start += b->chunk_len) {
        b->chunk_len = b->n - b->chunk_start < BATCH_CHUNK ? b->n - b->chunk_start : BATCH_CHUNK;
        swd_reply_t reply;
        int r = ctl_request(ctl, "task.submit_batch", pack_chunk, b, &reply, CALL_TIMEOUT_MS);
        if (r == EXIT_ANSWER) {
            batch_error(ctl, b, &reply);
        }
        if (r != EXIT_OK) {
            return r;
        }
        const msgpack_object *got = field(reply.result, "task_ids");
        if (got == NULL || got->type != MSGPACK_OBJECT_ARRAY) {
            return conn_error(ctl, "task.submit_batch answered without task_ids");
        }
        for (uint32_t i = 0; i < got->via.array.size; i++) {
            json_array_append_new(ids, swd_json_from_msgpack(&got->via.array.ptr[i]));
        }
    }
    return EXIT_OK;
}

static int cmd_submit_batch(ctl_t *ctl, int argc, char **argv) {
    batch_t b;
    memset(&b, 0, sizeof(b));
    size_t npos = 0;
    for (int i = 0; i < argc; i++) {
        int r = take_common(ctl, argc, argv, &i, &b.file, 1, &npos);
        if (r != PARSED) {
            return r;
        }
    }
    if (b.file == NULL) {
        return usage_error(ctl, "missing FILE.jsonl (or - for stdin)");
    }
    swd_buf_init(&b.packed);
    int r = batch_read(ctl, &b);
    json_t *ids = json_array();
    r = r == PARSED ? batch_send(ctl, &b, ids) : r;
    if (r == EXIT_OK && ctl->json) {
        json_t *res = json_pack("{sO}", "task_ids", ids);
        print_json(res, false);
        json_decref(res);
    } else if (r == EXIT_OK) {
        size_t i;
        json_t *id;
        json_array_foreach(ids, i, id) {
            printf("%s\n", json_is_string(id) ? json_string_value(id) : "?");
        }
    }
    json_decref(ids);
    swd_buf_close(&b.packed);
    free(b.off);
    free(b.line);
    return r;
}

// ---------------------------------------------------------------------------
// get, wait, cancel, drain, stats

// Parses "ID" plus the common options.
static int parse_one_id(ctl_t *ctl, int argc, char **argv, const char **id, const char *what) {
    size_t npos = 0;
    for (int i = 0; i < argc; i++) {
        int r = take_common(ctl, argc, argv, &i, id, 1, &npos);
        if (r != PARSED) {
            return r;
        }
    }
    if (*id == NULL) {
        return usage_error(ctl, "missing %s", what);
    }
    return PARSED;
}

// A command that sends {key: ID} and prints the result as key: value lines.
static int id_command(ctl_t *ctl, int argc, char **argv, const char *method, const char *key) {
    const char *id = NULL;
    int r = parse_one_id(ctl, argc, argv, &id, strcmp(key, "agent_id") == 0 ? "AGENT_ID" : "ID");
    if (r != PARSED) {
        return r;
    }
    kv_str_t params[] = {{key, id}, {NULL, NULL}};
    swd_reply_t reply;
    r = ctl_call(ctl, method, pack_kv_strs, params, &reply, CALL_TIMEOUT_MS);
    if (r != EXIT_OK) {
        return r;
    }
    if (!ctl->json && strcmp(method, "agent.drain") == 0) {
        printf("agent %s: draining\n", id);
    } else {
        print_result(ctl, reply.result, false);
    }
    return EXIT_OK;
}

static int cmd_get(ctl_t *ctl, int argc, char **argv) {
    return id_command(ctl, argc, argv, "task.get", "task_id");
}

static int cmd_cancel(ctl_t *ctl, int argc, char **argv) {
    return id_command(ctl, argc, argv, "task.cancel", "task_id");
}

static int cmd_drain(ctl_t *ctl, int argc, char **argv) {
    return id_command(ctl, argc, argv, "agent.drain", "agent_id");
}

static int cmd_wait(ctl_t *ctl, int argc, char **argv) {
    wait_args_t w = {.timeout_ms = 30000};
    size_t npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int r = take_value(ctl, argc, argv, &i, "--timeout-ms", &v);
        r = r == PARSED ? parse_u64(ctl, "--timeout-ms", v, &w.timeout_ms) : r;
        r = r == 0 ? take_common(ctl, argc, argv, &i, &w.task_id, 1, &npos) : r;
        if (r != PARSED) {
            return r;
        }
    }
    if (w.task_id == NULL) {
        return usage_error(ctl, "missing ID");
    }
    uint64_t server_ms = w.timeout_ms < WAIT_MAX_MS ? w.timeout_ms : WAIT_MAX_MS;
    swd_reply_t reply;
    int r = ctl_call(ctl, "task.wait", pack_wait, &w, &reply, (int)server_ms + CALL_TIMEOUT_MS);
    if (r == EXIT_OK) {
        print_result(ctl, reply.result, false);
    }
    return r;
}

// A command that takes only the common options and calls `method` without
// parameters. PARSED when `reply` holds the result for the caller to print as
// text; otherwise the exit code, with the help, the error answer or (--json)
// the result already printed.
static int call_no_args(ctl_t *ctl, int argc, char **argv, const char *method, swd_reply_t *reply) {
    size_t npos = 0;
    for (int i = 0; i < argc; i++) {
        int r = take_common(ctl, argc, argv, &i, NULL, 0, &npos);
        if (r != PARSED) {
            return r;
        }
    }
    int r = ctl_call(ctl, method, NULL, NULL, reply, CALL_TIMEOUT_MS);
    if (r != EXIT_OK) {
        return r;
    }
    if (ctl->json) {
        print_obj_json(reply->result, false);
        return EXIT_OK;
    }
    return PARSED;
}

static int cmd_stats(ctl_t *ctl, int argc, char **argv) {
    swd_reply_t reply;
    int r = call_no_args(ctl, argc, argv, "swarm.stats", &reply);
    if (r != PARSED) {
        return r;
    }
    print_kv(reply.result, NULL, true);
    return EXIT_OK;
}

// ---------------------------------------------------------------------------
// list, agents

typedef struct list_args {
    const char *state;
    uint64_t limit;
    bool has_limit;
    bool all;
    json_t *cursor; // NULL: first page
} list_args_t;

static int pack_list(msgpack_packer *pk, void *data) {
    const list_args_t *a = data;
    msgpack_pack_map(pk, (a->state != NULL) + a->has_limit + (a->cursor != NULL));
    if (a->state != NULL) {
        swd_pack_kv_str(pk, "state", a->state);
    }
    if (a->has_limit) {
        swd_pack_kv_u64(pk, "limit", a->limit);
    }
    if (a->cursor != NULL) {
        swd_pack_str(pk, "cursor");
        return swd_json_pack(pk, a->cursor);
    }
    return 0;
}

static int parse_list(ctl_t *ctl, int argc, char **argv, list_args_t *a) {
    size_t npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int r = 0;
        if (strcmp(argv[i], "--all") == 0) {
            a->all = true;
            continue;
        }
        if ((r = take_value(ctl, argc, argv, &i, "--state", &v)) == PARSED) {
            a->state = v;
            if (!one_of(v, task_states)) {
                return usage_error(ctl, "--state must be one of queued, deferred, running, "
                                        "succeeded, failed, cancelled");
            }
        } else if (r == 0 && (r = take_value(ctl, argc, argv, &i, "--limit", &v)) == PARSED) {
            r = parse_u64(ctl, "--limit", v, &a->limit);
            a->has_limit = true;
        } else if (r == 0 && (r = take_value(ctl, argc, argv, &i, "--cursor", &v)) == PARSED) {
            json_decref(a->cursor);
            a->cursor = json_string(v);
            r = a->cursor ? PARSED : usage_error(ctl, "--cursor must be UTF-8 text");
        }
        r = r == 0 ? take_common(ctl, argc, argv, &i, NULL, 0, &npos) : r;
        if (r != PARSED) {
            return r;
        }
    }
    return PARSED;
}

static void list_row(table_t *t, const msgpack_object *task) {
    static const char *const keys[] = {"task_id",  "type",     "state",
                                       "priority", "attempts", "agent_id"};
    char *row[6];
    for (size_t c = 0; c < 6; c++) {
        row[c] = value_text(field(task, keys[c]));
    }
    table_add(t, row);
}

// Takes one page's tasks into the table (or the JSON array) and its `next`
// into the cursor: true when another page should be fetched.
static bool list_page(const list_args_t *a, const msgpack_object *res, table_t *t, json_t *all,
                      json_t **next) {
    const msgpack_object *tasks = field(res, "tasks");
    for (uint32_t i = 0; tasks && tasks->type == MSGPACK_OBJECT_ARRAY && i < tasks->via.array.size;
         i++) {
        if (all != NULL) {
            json_array_append_new(all, swd_json_from_msgpack(&tasks->via.array.ptr[i]));
        } else {
            list_row(t, &tasks->via.array.ptr[i]);
        }
    }
    const msgpack_object *n = field(res, "next");
    *next = n != NULL && n->type != MSGPACK_OBJECT_NIL ? swd_json_from_msgpack(n) : NULL;
    return a->all && *next != NULL;
}

static void list_finish(const ctl_t *ctl, const list_args_t *a, table_t *t, json_t *all,
                        const json_t *next) {
    if (ctl->json) {
        json_t *res = json_pack("{sOsO}", "tasks", all, "next", next ? next : json_null());
        print_json(res, false);
        json_decref(res);
        return;
    }
    table_print_free(t);
    if (next != NULL && !a->all) {
        char *s = json_dumps(next, JSON_ENCODE_ANY | JSON_COMPACT);
        fprintf(stderr, "(more tasks: --cursor %s, or --all)\n",
                json_is_string(next) ? json_string_value(next) : s);
        free(s);
    }
}

static int cmd_list(ctl_t *ctl, int argc, char **argv) {
    static const char *const header[] = {"ID", "TYPE", "STATE", "PRIORITY", "ATTEMPTS", "AGENT"};
    list_args_t a;
    memset(&a, 0, sizeof(a));
    int r = parse_list(ctl, argc, argv, &a);
    if (r != PARSED) {
        json_decref(a.cursor);
        return r;
    }
    table_t t;
    table_init(&t, header, 6);
    json_t *all = ctl->json ? json_array() : NULL;
    json_t *next = NULL;
    bool more = true;
    while (more) {
        swd_reply_t reply;
        r = ctl_call(ctl, "task.list", pack_list, &a, &reply, CALL_TIMEOUT_MS);
        if (r != EXIT_OK) {
            break;
        }
        json_decref(next);
        more = list_page(&a, reply.result, &t, all, &next);
        json_decref(a.cursor);
        a.cursor = json_incref(next);
    }
    if (r == EXIT_OK) {
        list_finish(ctl, &a, &t, all, next);
    }
    table_free(&t);
    json_decref(all);
    json_decref(next);
    json_decref(a.cursor);
    return r;
}

static char *inflight_text(const msgpack_object *agent) {
    char *in = value_text(field(agent, "inflight"));
    char *max = value_text(field(agent, "max_concurrency"));
    char *s = swd_xasprintf("%s/%s", in, max);
    free(in);
    free(max);
    return s;
}

static char *health_text(const msgpack_object *agent) {
    const msgpack_object *h = field(agent, "health");
    if (h != NULL && (h->type == MSGPACK_OBJECT_FLOAT64 || h->type == MSGPACK_OBJECT_FLOAT32)) {
        return swd_xasprintf("%.2f", h->via.f64);
    }
    return value_text(h);
}

// Prints the agents of an agent.list result as a table; with `max_rows` > 0
// at most that many rows, then how many more there are.
static void print_agents_table(const msgpack_object *result, size_t max_rows) {
    static const char *const header[] = {"ID",           "NAME",   "POOL",      "STATE",
                                         "INFLIGHT/MAX", "HEALTH", "COMPLETED", "FAILED"};
    const msgpack_object *agents = field(result, "agents");
    uint32_t n = agents && agents->type == MSGPACK_OBJECT_ARRAY ? agents->via.array.size : 0;
    uint32_t shown = max_rows > 0 && n > max_rows ? (uint32_t)max_rows : n;
    table_t t;
    table_init(&t, header, 8);
    for (uint32_t i = 0; i < shown; i++) {
        const msgpack_object *ag = &agents->via.array.ptr[i];
        char *row[8] = {
            value_text(field(ag, "agent_id")),
            value_text(field(ag, "name")),
            value_text(field(ag, "pool")),
            value_text(field(ag, "state")),
            inflight_text(ag),
            health_text(ag),
            value_text(field(ag, "completed")),
            value_text(field(ag, "failed")),
        };
        table_add(&t, row);
    }
    table_print_free(&t);
    if (shown < n) {
        printf("... and %" PRIu32 " more agents (swarmctl agents lists them all)\n", n - shown);
    }
}

static int cmd_agents(ctl_t *ctl, int argc, char **argv) {
    swd_reply_t reply;
    int r = call_no_args(ctl, argc, argv, "agent.list", &reply);
    if (r != PARSED) {
        return r;
    }
    print_agents_table(reply.result, 0);
    return EXIT_OK;
}

// ---------------------------------------------------------------------------
// status: swarm.stats and the agents, on one screen

enum {
    STATUS_MAX_AGENTS = 20, // rows of the agents table
    STATUS_MAX_VALUE = 40,  // characters of one value in the summary
};

// One summary line per section of swarm.stats: "queue     queued 0  running 2".
static void print_stats_summary(const json_t *stats) {
    const char *section;
    json_t *body;
    json_object_foreach((json_t *)stats, section, body) {
        printf("%-9s", section);
        if (!json_is_object(body)) {
            char *s = json_dumps(body, JSON_ENCODE_ANY | JSON_COMPACT | swd_json_real_flags(body));
            printf(" %s\n", s ? s : "?");
            free(s);
            continue;
        }
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
            char *s = json_is_string(v)
                          ? swd_xstrdup(json_string_value(v))
                          : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | swd_json_real_flags(v));
            const char *text = s ? s : "?";
            if (json_is_null(v)) {
                text = "-";
            }
            if (strlen(text) > STATUS_MAX_VALUE) {
                printf(" %s %.*s...", key, STATUS_MAX_VALUE - 3, text);
            } else {
                printf(" %s %s", key, text);
            }
            free(s);
        }
        printf("\n");
    }
}

static int cmd_status(ctl_t *ctl, int argc, char **argv) {
    swd_reply_t reply;
    int r = call_no_args(ctl, argc, argv, "swarm.stats", &reply);
    if (r != PARSED) {
        return r;
    }
    // The reply's memory is reused by the next call: keep stats as JSON.
    json_t *stats = swd_json_from_msgpack(reply.result);
    r = ctl_call(ctl, "agent.list", NULL, NULL, &reply, CALL_TIMEOUT_MS);
    if (r == EXIT_OK) {
        if (stats != NULL) {
            print_stats_summary(stats);
        }
        printf("\n");
        print_agents_table(reply.result, STATUS_MAX_AGENTS);
    }
    json_decref(stats);
    return r;
}

// ---------------------------------------------------------------------------
// watch

typedef struct topics {
    const char **names;
    size_t n;
} topics_t;

static int pack_subscribe(msgpack_packer *pk, void *data) {
    const topics_t *t = data;
    msgpack_pack_map(pk, 1);
    swd_pack_str(pk, "topics");
    msgpack_pack_array(pk, t->n);
    for (size_t i = 0; i < t->n; i++) {
        swd_pack_str(pk, t->names[i]);
    }
    return 0;
}

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; // no SA_RESTART: poll() returns EINTR
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

// "2024-05-01T12:31:30.123Z" for a ms stamp.
static void format_ts(int64_t ms, char *buf, size_t cap) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03dZ", (int)(ms % 1000));
}

// One human line: time, topic, event, then the telling fields of `data`.
static void print_event_line(const swd_event_t *ev) {
    static const char *const keys[] = {"task_id", "agent_id",  "name",   "type",
                                       "pool",    "attempt",   "level",  "component",
                                       "msg",     "parameter", "reason", NULL};
    char ts[40];
    format_ts(ev->ts, ts, sizeof(ts));
    printf("%s %-8s %-12s", ts, ev->topic, ev->event);
    bool any = false;
    for (size_t i = 0; keys[i] != NULL; i++) {
        const msgpack_object *v = field(ev->data, keys[i]);
        if (v != NULL && v->type != MSGPACK_OBJECT_NIL) {
            char *s = value_text(v);
            printf(" %s=%s", keys[i], s);
            free(s);
            any = true;
        }
    }
    if (!any && ev->data->type != MSGPACK_OBJECT_NIL) {
        char *s = value_text(ev->data);
        printf(" %s", s);
        free(s);
    }
    printf("\n");
}

static int watch_loop(ctl_t *ctl) {
    while (!interrupted) {
        swd_event_t ev;
        int r = swd_client_next_event(ctl->client, 1000, &ev);
        if (r == -EINTR || r == 0) {
            continue;
        }
        if (r < 0) {
            return conn_error(ctl, swd_client_errmsg(ctl->client));
        }
        if (ctl->json) {
            print_obj_json(ev.body, true);
        } else {
            print_event_line(&ev);
        }
        fflush(stdout);
    }
    return EXIT_OK;
}

static int cmd_watch(ctl_t *ctl, int argc, char **argv) {
    static const char *defaults[] = {"task", "agent"};
    topics_t t = {.names = swd_xcalloc((size_t)argc + 2, sizeof(char *))};
    int r = PARSED;
    for (int i = 0; i < argc && r == PARSED; i++) {
        size_t before = t.n;
        r = take_common(ctl, argc, argv, &i, t.names, (size_t)argc, &t.n);
        if (r == PARSED && t.n > before && !one_of(t.names[t.n - 1], topics_all)) {
            r = usage_error(ctl, "unknown topic '%s' (task, log, tuner, healing, agent, scaling)",
                            t.names[t.n - 1]);
        }
    }
    if (r == PARSED && t.n == 0) {
        memcpy(t.names, defaults, sizeof(defaults));
        t.n = 2;
    }
    swd_reply_t reply;
    r = r == PARSED ? ctl_call(ctl, "subscribe", pack_subscribe, &t, &reply, CALL_TIMEOUT_MS) : r;
    free(t.names);
    if (r != EXIT_OK) {
        return r;
    }
    catch_signals();
    return watch_loop(ctl);
}

// ---------------------------------------------------------------------------
// logs: the HTTP endpoint's /logs (JSON lines) and /logs?follow=1
// (server-sent events), through libcurl.
//
//   logs -n N        GET /logs?n=N ──lines──▶ print
//   logs -f          GET /logs?follow=1 ──data: events──▶ print, until ^C or
//                    the server closes
//   logs -n N -f     the follow stream first; once its headers are in (the
//                    server has subscribed it), GET /logs?n=N; the stream's
//                    records are held until the backlog is printed, and
//                    those the backlog already holds are dropped

enum {
    LOGS_CONNECT_TIMEOUT_MS = 5000,
    LOGS_FETCH_TIMEOUT_MS = 30000,
    LOGS_MAX_ERROR_BODY = 64 * 1024,
    LOGS_MAX_LINE = 64 * 1024 * 1024, // a record longer than this is not swarmd's
};

typedef struct lines {
    char **v;
    size_t n, cap;
} lines_t;

static void lines_push(lines_t *l, const char *s, size_t len) {
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->v = swd_xrealloc(l->v, l->cap * sizeof(char *));
    }
    l->v[l->n++] = swd_xstrndup(s, len);
}

static void lines_free(lines_t *l) {
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]);
    }
    free(l->v);
    memset(l, 0, sizeof(*l));
}

typedef struct xfer {
    const ctl_t *ctl;
    CURL *easy;
    char *url;
    bool sse;          // event-stream framing (else JSON lines)
    bool hold;         // keep records in `held` instead of printing them
    bool headers_done; // the final response's headers are in
    bool too_long;     // a line passed LOGS_MAX_LINE
    long status;       // HTTP status, once the headers are in
    swd_buf_t partial; // an incomplete line
    swd_buf_t event;   // the data of the event being read (sse)
    swd_buf_t body;    // an error answer's body (status != 200)
    lines_t held;
    size_t printed;
    char errbuf[CURL_ERROR_SIZE];
} xfer_t;

static void upper_level(const char *level, char *out, size_t cap) {
    size_t i = 0;
    for (; level[i] != '\0' && i + 1 < cap; i++) {
        out[i] = (char)toupper((unsigned char)level[i]);
    }
    out[i] = '\0';
}

// A field's value as shown after "key=": strings bare unless they need
// quotes, everything else as compact JSON. The caller frees it.
static char *log_value_text(const json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        bool plain = s[0] != '\0';
        for (const unsigned char *p = (const unsigned char *)s; plain && *p != '\0'; p++) {
            plain = *p > ' ' && *p != '"' && *p != '=' && *p != '\\' && *p != 0x7f;
        }
        if (plain) {
            return swd_xstrdup(s);
        }
    }
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | swd_json_real_flags(v));
    char *out = swd_xstrdup(s ? s : "?");
    free(s);
    return out;
}

// "TIME LEVEL component: msg key=value..." for one record; with --json, or
// for a line that is not a JSON object, the line as it came.
static void print_log_record(const ctl_t *ctl, const char *line) {
    json_error_t je;
    json_t *r = ctl->json ? NULL : json_loads(line, JSON_ALLOW_NUL, &je);
    if (!json_is_object(r)) {
        printf("%s\n", line);
        json_decref(r);
        return;
    }
    char ts[40] = "-";
    const json_t *t = json_object_get(r, "ts");
    if (json_is_integer(t)) {
        format_ts((int64_t)json_integer_value(t), ts, sizeof(ts));
    }
    const char *level = json_string_value(json_object_get(r, "level"));
    const char *component = json_string_value(json_object_get(r, "component"));
    const char *msg = json_string_value(json_object_get(r, "msg"));
    char lv[16];
    upper_level(level ? level : "-", lv, sizeof(lv));
    printf("%s %-5s %s: %s", ts, lv, component ? component : "-", msg ? msg : "");
    const char *key;
    json_t *v;
    json_object_foreach(r, key, v) {
        if (strcmp(key, "ts") == 0 || strcmp(key, "level") == 0 || strcmp(key, "component") == 0 ||
            strcmp(key, "msg") == 0) {
            continue;
        }
        char *s = log_value_text(v);
        printf(" %s=%s", key, s);
        free(s);
    }
    printf("\n");
    json_decref(r);
}

static void xfer_record(xfer_t *x, const char *rec, size_t len) {
    if (x->hold) {
        lines_push(&x->held, rec, len);
        return;
    }
    char *s = swd_xstrndup(rec, len);
    print_log_record(x->ctl, s);
    free(s);
    x->printed++;
    if (x->sse) {
        fflush(stdout); // a follower is read live, often through a pipe
    }
}

// One line of the body, without its line end.
static void xfer_line(xfer_t *x, const char *line, size_t len) {
    if (!x->sse) {
        if (len > 0) {
            xfer_record(x, line, len);
        }
        return;
    }
    if (len == 0) { // an event ends
        if (x->event.len > 0) {
            xfer_record(x, x->event.data, x->event.len);
            swd_buf_reset(&x->event);
        }
        return;
    }
    if (len >= 5 && memcmp(line, "data:", 5) == 0) {
        size_t skip = len > 5 && line[5] == ' ' ? 6 : 5;
        if (x->event.len > 0) {
            swd_buf_append(&x->event, "\n", 1);
        }
        swd_buf_append(&x->event, line + skip, len - skip);
    }
    // Comments (":...") and other fields (event:, id:, retry:) carry no record.
}

static void xfer_feed(xfer_t *x, const char *data, size_t len) {
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (x->partial.len + take > LOGS_MAX_LINE) {
            x->too_long = true;
            return;
        }
        swd_buf_append(&x->partial, data, take);
        if (nl == NULL) {
            return;
        }
        size_t n = x->partial.len;
        if (n > 0 && x->partial.data[n - 1] == '\r') {
            n--;
        }
        xfer_line(x, x->partial.data ? x->partial.data : "", n);
        swd_buf_reset(&x->partial);
        data += take + 1;
        len -= take + 1;
    }
}

static size_t on_logs_header(char *data, size_t size, size_t n, void *user) {
    xfer_t *x = user;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        x->headers_done = false; // a new response (after a 100 Continue, say)
    } else if ((len == 2 && memcmp(data, "\r\n", 2) == 0) || (len == 1 && data[0] == '\n')) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
        x->headers_done = x->status >= 200;
    }
    return len;
}

static size_t on_logs_body(char *data, size_t size, size_t n, void *user) {
    xfer_t *x = user;
    size_t len = size * n;
    if (x->status != 200) {
        if (x->body.len < LOGS_MAX_ERROR_BODY) {
            size_t room = LOGS_MAX_ERROR_BODY - x->body.len;
            swd_buf_append(&x->body, data, len < room ? len : room);
        }
        return len;
    }
    xfer_feed(x, data, len);
    // 0 aborts the transfer (CURLE_WRITE_ERROR): a record too long to hold.
    return x->too_long ? 0 : len;
}

// Stops a follower's transfer at ^C: libcurl calls this at least once a second.
static int on_logs_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow) {
    (void)user, (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return interrupted ? 1 : 0;
}

static void xfer_init(xfer_t *x, const ctl_t *ctl, const char *base, const char *query, bool sse) {
    memset(x, 0, sizeof(*x));
    x->ctl = ctl;
    x->sse = sse;
    x->url = swd_xasprintf("%s/logs%s%s", base, query[0] ? "?" : "", query);
    swd_buf_init(&x->partial);
    swd_buf_init(&x->event);
    swd_buf_init(&x->body);
    x->easy = curl_easy_init();
    if (x->easy == NULL) {
        return;
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    // swarmd's endpoint is reached directly, like its RPC port: no proxy
    // from the environment.
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)LOGS_CONNECT_TIMEOUT_MS);
    if (!sse) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)LOGS_FETCH_TIMEOUT_MS);
    }
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "swarmctl/" SWD_VERSION);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_logs_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_logs_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_logs_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
}

static void xfer_close(xfer_t *x) {
    if (x->easy != NULL) {
        curl_easy_cleanup(x->easy);
    }
    free(x->url);
    swd_buf_close(&x->partial);
    swd_buf_close(&x->event);
    swd_buf_close(&x->body);
    lines_free(&x->held);
}

// The exit status for a finished transfer (printing why it failed).
static int xfer_result(const ctl_t *ctl, xfer_t *x, CURLcode code) {
    if (code == CURLE_ABORTED_BY_CALLBACK && interrupted) {
        return EXIT_OK;
    }
    if (x->too_long) {
        fprintf(stderr, "swarmctl: %s: %s sent a line longer than %d bytes\n", ctl->cmd, x->url,
                LOGS_MAX_LINE);
        return EXIT_USAGE;
    }
    if (x->status != 0 && x->status != 200) {
        // swarmd's errors are {"error": "..."}; show that, else the body.
        json_error_t je;
        swd_buf_append(&x->body, "", 1);
        json_t *j = json_loads(x->body.data, 0, &je);
        const char *why = json_string_value(json_object_get(j, "error"));
        char *text = swd_xstrdup(why ? why : x->body.data);
        text[strcspn(text, "\r\n")] = '\0';
        fprintf(stderr, "swarmctl: %s: %s answered HTTP %ld%s%s\n", ctl->cmd, x->url, x->status,
                text[0] ? ": " : "", text);
        free(text);
        json_decref(j);
        return EXIT_ANSWER;
    }
    if (code != CURLE_OK) {
        fprintf(stderr, "swarmctl: %s: %s swarmd's HTTP endpoint at %s: %s\n", ctl->cmd,
                x->status == 0 ? "cannot reach" : "lost", ctl->http,
                x->errbuf[0] ? x->errbuf : curl_easy_strerror(code));
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

// Prints the backlog, then the follower's held records that the backlog
// does not already hold: those logged before the backlog was taken are its
// last lines, in the same order, so the overlap is the longest prefix of
// `held` that is a suffix of `backlog`.
static void logs_join(const ctl_t *ctl, xfer_t *backlog, xfer_t *follow) {
    const lines_t *b = &backlog->held;
    const lines_t *h = &follow->held;
    size_t overlap = 0;
    size_t most = b->n < h->n ? b->n : h->n;
    for (size_t k = most; k > 0 && overlap == 0; k--) {
        bool same = true;
        for (size_t i = 0; i < k && same; i++) {
            same = strcmp(b->v[b->n - k + i], h->v[i]) == 0;
        }
        overlap = same ? k : 0;
    }
    for (size_t i = 0; i < b->n; i++) {
        print_log_record(ctl, b->v[i]);
    }
    for (size_t i = overlap; i < h->n; i++) {
        print_log_record(ctl, h->v[i]);
    }
    fflush(stdout);
    lines_free(&follow->held);
    follow->hold = false;
}

// Runs the transfers on one multi handle until the follower (or the lone
// fetch) ends, or ^C.
static int logs_run(const ctl_t *ctl, xfer_t *main_x, xfer_t *backlog) {
    CURLM *multi = curl_multi_init();
    if (multi == NULL) {
        return conn_error(ctl, "cannot start libcurl");
    }
    curl_multi_add_handle(multi, main_x->easy);
    bool backlog_added = false;
    bool backlog_done = backlog == NULL;
    bool main_done = false;
    int r = EXIT_OK;
    // A follower that ends while the backlog is on its way still waits for it.
    while ((!main_done || (backlog_added && !backlog_done)) && r == EXIT_OK && !interrupted) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK) {
            r = conn_error(ctl, curl_multi_strerror(mc));
            break;
        }
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            xfer_t *x = m->easy_handle == main_x->easy ? main_x : backlog;
            if (x == NULL) {
                continue; // not ours (cannot happen: two handles at most)
            }
            int xr = xfer_result(ctl, x, m->data.result);
            r = r == EXIT_OK ? xr : r;
            if (x == backlog) {
                backlog_done = true;
                if (xr == EXIT_OK) {
                    logs_join(ctl, backlog, main_x);
                }
            } else {
                main_done = true;
            }
        }
        if (!backlog_added && !backlog_done && main_x->headers_done && main_x->status == 200) {
            curl_multi_add_handle(multi, backlog->easy);
            backlog_added = true;
        }
        if ((!main_done || (backlog_added && !backlog_done)) && r == EXIT_OK) {
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
        }
    }
    if (main_x->hold && r == EXIT_OK) {
        // The stream ended before a backlog was taken: what it brought still counts.
        for (size_t i = 0; i < main_x->held.n; i++) {
            print_log_record(ctl, main_x->held.v[i]);
        }
    }
    if (backlog_added) {
        curl_multi_remove_handle(multi, backlog->easy);
    }
    curl_multi_remove_handle(multi, main_x->easy);
    curl_multi_cleanup(multi);
    return r;
}

// The endpoint's base URL from --http: "HOST:PORT", or a full http:// URL.
static char *http_base(const char *http) {
    const char *p = http;
    bool has_scheme = strncmp(p, "http://", 7) == 0 || strncmp(p, "https://", 8) == 0;
    char *base = has_scheme ? swd_xstrdup(p) : swd_xasprintf("http://%s", p);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/') {
        base[--n] = '\0';
    }
    return base;
}

typedef struct logs_args {
    uint64_t n;
    bool has_n;
    bool follow;
} logs_args_t;

static int parse_logs(ctl_t *ctl, int argc, char **argv, logs_args_t *a) {
    size_t npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *v = NULL;
        int r = 0;
        if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0) {
            a->follow = true;
            continue;
        }
        if (strncmp(argv[i], "-n", 2) == 0 && argv[i][2] >= '0' && argv[i][2] <= '9') {
            v = argv[i] + 2; // -n20
            r = PARSED;
        } else if ((r = take_value(ctl, argc, argv, &i, "-n", &v)) == 0) {
            r = take_value(ctl, argc, argv, &i, "--lines", &v);
        }
        if (r == PARSED) {
            r = parse_u64(ctl, "-n", v, &a->n);
            a->has_n = true;
        }
        r = r == 0 ? take_common(ctl, argc, argv, &i, NULL, 0, &npos) : r;
        if (r != PARSED) {
            return r;
        }
    }
    return PARSED;
}

static int cmd_logs(ctl_t *ctl, int argc, char **argv) {
    logs_args_t a;
    memset(&a, 0, sizeof(a));
    int r = parse_logs(ctl, argc, argv, &a);
    if (r != PARSED) {
        return r;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return conn_error(ctl, "cannot start libcurl");
    }
    char *base = http_base(ctl->http);
    char *nq = a.has_n ? swd_xasprintf("n=%" PRIu64, a.n) : swd_xstrdup("");
    xfer_t fetch, follow;
    xfer_init(&fetch, ctl, base, nq, false);
    xfer_init(&follow, ctl, base, "follow=1", true);
    if (fetch.easy == NULL || follow.easy == NULL) {
        r = conn_error(ctl, "cannot start libcurl");
    } else if (!a.follow) {
        r = logs_run(ctl, &fetch, NULL);
    } else {
        catch_signals();
        fetch.hold = true;
        follow.hold = a.has_n && a.n > 0;
        r = logs_run(ctl, &follow, follow.hold ? &fetch : NULL);
    }
    xfer_close(&fetch);
    xfer_close(&follow);
    free(nq);
    free(base);
    curl_global_cleanup();
    return r;
}

// ---------------------------------------------------------------------------
// Dispatch and help

static const command_t commands[] = {
    {"submit",
     "submit TYPE [--payload JSON] [--priority P] [--tokens N] [--timeout-ms N] [--retries N] "
     "[--key K] [--after ID,...] [--label k=v]... [--wait]",
     "submit a task",
     "  --payload JSON     the task's payload, any JSON value\n"
     "  --priority P       critical, high, medium (default) or low\n"
     "  --tokens N         estimated tokens (server default 1000)\n"
     "  --timeout-ms N     per-attempt timeout\n"
     "  --retries N        retries after the first attempt (server default 3)\n"
     "  --key K            idempotency key: the same key gives the same task\n"
     "  --after ID,...     tasks that must succeed first\n"
     "  --label k=v        a label; repeat for more\n"
     "  --wait             wait until the task ends and print it\n",
     cmd_submit},
    {"submit-batch", "submit-batch FILE.jsonl", "submit the tasks of a JSON-lines file",
     "  Each line is a task.submit params object; blank lines are skipped; '-' reads\n"
     "  stdin. Bad lines are reported by number and nothing is sent. Tasks go in\n"
     "  chunks of 1000 (task.submit_batch: each chunk all or none); prints the ids.\n",
     cmd_submit_batch},
    {"get", "get ID", "show a task", NULL, cmd_get},
    {"wait", "wait ID [--timeout-ms N]", "wait for a task to end (default 30000 ms)",
     "  Prints the task when it ends, or as it stands at the timeout (max 300000).\n", cmd_wait},
    {"cancel", "cancel ID", "cancel a task", NULL, cmd_cancel},
    {"list", "list [--state S] [--limit N] [--cursor C] [--all]", "list tasks, oldest first",
     "  --state S          queued, deferred, running, succeeded, failed or cancelled\n"
     "  --limit N          tasks per page (server default 100)\n"
     "  --cursor C         start at this page (the previous page's `next`)\n"
     "  --all              fetch every page\n",
     cmd_list},
    {"agents", "agents", "list agents", NULL, cmd_agents},
    {"drain", "drain AGENT_ID", "stop giving an agent new tasks", NULL, cmd_drain},
    {"stats", "stats", "show swarm statistics", NULL, cmd_stats},
    {"status", "status", "show a summary of the swarm and its agents on one screen",
     "  The queue, task, agent and token counts of swarm.stats, one line per section,\n"
     "  then the agents table (the first 20 agents). With --json, prints swarm.stats'\n"
     "  object as it is.\n",
     cmd_status},
    {"logs", "logs [-n N] [-f]", "print swarmd's recent log records (HTTP endpoint)",
     "  -n N, --lines N     the last N records (server default 200; with -f: print\n"
     "                      the last N, then follow)\n"
     "  -f, --follow        print new records as they are logged, until interrupted\n"
     "                      or swarmd closes the stream\n"
     "  Reads /logs and /logs?follow=1 of the HTTP endpoint (--http). One line per\n"
     "  record: TIME LEVEL component: msg key=value...; with --json, the records'\n"
     "  JSON lines as sent.\n",
     cmd_logs},
    {"watch", "watch [TOPIC...]", "print events until interrupted (default: task agent)",
     "  Topics: task, log, tuner, healing, agent, scaling. One line per event;\n"
     "  with --json, one JSON document per line.\n",
     cmd_watch},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const command_t *find_command(const char *name) {
    for (size_t i = 0; name != NULL && i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0) {
            return &commands[i];
        }
    }
    return NULL;
}

static void print_command_help(const command_t *cmd) {
    if (cmd == NULL) {
        return;
    }
    // The synopsis wrapped at 80 columns, continuation lines indented.
    const char *lead = "Usage: swarmctl [GLOBAL OPTIONS] ";
    size_t col = strlen(lead);
    fputs(lead, stdout);
    bool first = true;
    for (const char *p = cmd->synopsis; *p != '\0';) {
        size_t w = strcspn(p, " ");
        if (!first && col + 1 + w > 79) {
            fputs("\n       ", stdout);
            col = 7;
        } else if (!first) {
            fputc(' ', stdout);
            col++;
        }
        printf("%.*s", (int)w, p);
        col += w;
        first = false;
        p += w + (p[w] ? 1 : 0);
    }
    printf("\n\n%s.\n", cmd->summary);
    if (cmd->details != NULL) {
        printf("\n%s", cmd->details);
    }
    printf("\nGlobal options, also accepted after the command: --addr, --http, --token,\n"
           "--json.\n");
}

static void print_help(void) {
    printf("Usage: swarmctl [--addr HOST:PORT] [--http HOST:PORT] [--token T] [--json]\n"
           "                COMMAND [ARGS]\n\n"
           "Command-line client of swarmd.\n\nCommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        printf("  %-14s %s\n", commands[i].name, commands[i].summary);
    }
    printf("\nOptions:\n"
           "  --addr HOST:PORT   swarmd's RPC address: HOST:PORT, [IPV6]:PORT or unix:PATH\n"
           "                     (default $SWARMD_ADDR, else " DEFAULT_ADDR ")\n"
           "  --http HOST:PORT   swarmd's HTTP status endpoint, for logs\n"
           "                     (default $SWARMD_HTTP, else " DEFAULT_HTTP ")\n"
           "  --token T          client token, sent in swarm.hello (default $SWARMD_TOKEN)\n"
           "  --json             print results as JSON (watch: one document per line)\n"
           "  -h, --help         this help; 'swarmctl COMMAND --help' for one command\n"
           "  --version          print the version\n\n"
           "Exit status: 0 success, 1 the server answered with an error, 2 usage or\n"
           "connection errors.\n");
}

// Global options before the command: the index of the command, or -1 - exit.
static int parse_global(ctl_t *ctl, int argc, char **argv) {
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *v = NULL;
        int r;
        if (strcmp(argv[i], "--json") == 0) {
            ctl->json = true;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help();
            return -1 - EXIT_OK;
        } else if (strcmp(argv[i], "--version") == 0) {
            printf("swarmctl %s\n", SWD_VERSION);
            return -1 - EXIT_OK;
        } else if ((r = take_value(ctl, argc, argv, &i, "--addr", &v)) != 0) {
            ctl->addr = v;
            if (r != PARSED) {
                return -1 - r;
            }
        } else if ((r = take_value(ctl, argc, argv, &i, "--token", &v)) != 0) {
            ctl->token = v;
            if (r != PARSED) {
                return -1 - r;
            }
        } else if ((r = take_value(ctl, argc, argv, &i, "--http", &v)) != 0) {
            ctl->http = v;
            if (r != PARSED) {
                return -1 - r;
            }
        } else {
            return -1 - usage_error(ctl, "unknown option '%s'", argv[i]);
        }
    }
    if (i >= argc) {
        return -1 - usage_error(ctl, "missing COMMAND");
    }
    return i;
}

int main(int argc, char **argv) {
    ctl_t ctl = {.addr = getenv("SWARMD_ADDR"), .token = getenv("SWARMD_TOKEN")};
    if (ctl.addr == NULL || ctl.addr[0] == '\0') {
        ctl.addr = DEFAULT_ADDR;
    }
    ctl.http = getenv("SWARMD_HTTP");
    if (ctl.http == NULL || ctl.http[0] == '\0') {
        ctl.http = DEFAULT_HTTP;
    }
    if (ctl.token != NULL && ctl.token[0] == '\0') {
        ctl.token = NULL;
    }
    int at = parse_global(&ctl, argc, argv);
    if (at < 0) {
        return -1 - at;
    }
    if (strcmp(argv[at], "help") == 0) {
        const command_t *c = at + 1 < argc ? find_command(argv[at + 1]) : NULL;
        if (c != NULL) {
            print_command_help(c);
        } else {
            print_help();
        }
        return EXIT_OK;
    }
    const command_t *cmd = find_command(argv[at]);
    if (cmd == NULL) {
        return usage_error(&ctl, "unknown command '%s'", argv[at]);
    }
    ctl.cmd = cmd->name;
    int r = cmd->run(&ctl, argc - at - 1, argv + at + 1);
    swd_client_free(ctl.client);
    if (fflush(stdout) != 0 && r == EXIT_OK) {
        fprintf(stderr, "swarmctl: writing the output failed: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    return r;
}
