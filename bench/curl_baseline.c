// curl_baseline: libcurl alone, doing what an http pool asks of it and
// nothing else, as fast as libcurl goes. It is the ceiling under swarmd's
// http transport (bench/http_pool.sh prints swarmd against it and against
// wrk): no scheduler, no JSON, no event loop but libcurl's own.
//
//   curl_baseline URL CONNECTIONS REQUESTS
//
// CONNECTIONS easy handles POST the same body the pool sends for the prompt
// "hello" with the options agents/http_agent.c sets (kept-alive
// connections, the same headers, header and body callbacks that keep the
// answer), each re-added as soon as its answer is in, driven by
// curl_multi_perform()/curl_multi_poll(). Prints one line: "REQUESTS
// SECONDS REQ_PER_S FAILED". Exits 1 when any request failed.
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BODY "{\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],\"model\":\"bench\"}"

typedef struct {
    char data[4096];
    size_t len;
} answer_t;

// Keeps the answer, as the pool does; what does not fit is counted only.
static size_t on_body(char *data, size_t size, size_t n, void *ud) {
    answer_t *a = ud;
    size_t len = size * n;
    size_t room = sizeof(a->data) - a->len;
    memcpy(a->data + a->len, data, len < room ? len : room);
    a->len += len < room ? len : room;
    return len;
}

static size_t on_header(char *line, size_t size, size_t n, void *ud) {
    (void)line;
    (void)ud;
    return size * n;
}

static CURL *easy_new(const char *url, struct curl_slist *headers, answer_t *a) {
    CURL *e = curl_easy_init();
    if (e == NULL) {
        abort();
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, BODY);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(BODY));
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "swarmd-bench");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)a);
    return e;
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4 || atoi(argv[2]) <= 0 || atol(argv[3]) <= 0) {
        fprintf(stderr, "usage: curl_baseline URL CONNECTIONS REQUESTS\n");
        return 2;
    }
    const char *url = argv[1];
    int conns = atoi(argv[2]);
    long total = atol(argv[3]);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    struct curl_slist *headers = NULL;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    CURL **easy = calloc((size_t)conns, sizeof(*easy));
    answer_t *answers = calloc((size_t)conns, sizeof(*answers));
    long started = 0, done = 0, failed = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < conns && started < total; i++, started++) {
        easy[i] = easy_new(url, headers, &answers[i]);
        curl_multi_add_handle(multi, easy[i]);
    }
    while (done < total) {
        int running;
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            CURL *e = m->easy_handle;
            long status = 0;
            char *priv;
            curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
            failed += m->data.result != CURLE_OK || status != 200;
            done++;
            curl_multi_remove_handle(multi, e);
            ((answer_t *)priv)->len = 0;
            if (started < total) {
                curl_multi_add_handle(multi, e);
                started++;
            }
        }
        if (done < total) {
            curl_multi_poll(multi, NULL, 0, 1000, NULL);
        }
    }
    double s = seconds_since(&t0);
    printf("%ld %.3f %.0f %ld\n", done, s, (double)done / s, failed);
    for (int i = 0; i < conns; i++) {
        if (easy[i] != NULL) {
            curl_easy_cleanup(easy[i]);
        }
    }
    free(easy);
    free(answers);
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
