#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/errors.h"
#include "runtime/net.h"

int swd_net_parse(const char *addr, struct sockaddr_storage *out, char *err, size_t errlen) {
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host)) {
        snprintf(err, errlen, "'%s' is not HOST:PORT", addr);
        return SWD_ECONFIG;
    }
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
        snprintf(err, errlen, "'%s' has no valid port (0-65535)", addr);
        return SWD_ECONFIG;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, NULL, &hints, &res);
    if (r != 0 || res == NULL) {
        snprintf(err, errlen, "cannot resolve '%s': %s", host, gai_strerror(r));
        return SWD_ECONFIG;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (out->ss_family == AF_INET) {
        ((struct sockaddr_in *)out)->sin_port = htons((uint16_t)port);
    } else {
        ((struct sockaddr_in6 *)out)->sin6_port = htons((uint16_t)port);
    }
    return 0;
}

void swd_net_format(const struct sockaddr *sa, char *buf, size_t cap) {
    char ip[64] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(buf, cap, "%s:%d", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(buf, cap, "[%s]:%d", ip, port);
    } else {
        snprintf(buf, cap, "local");
    }
}

int swd_net_tcp_local(const uv_tcp_t *h, char *buf, size_t cap) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int r = uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len);
    if (r == 0) {
        swd_net_format((struct sockaddr *)&ss, buf, cap);
    }
    return r;
}

int swd_net_tcp_peer(const uv_tcp_t *h, char *buf, size_t cap) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int r = uv_tcp_getpeername(h, (struct sockaddr *)&ss, &len);
    if (r == 0) {
        swd_net_format((struct sockaddr *)&ss, buf, cap);
    }
    return r;
}

bool swd_secret_eq(const char *a, const char *b) {
    if (a == NULL || b == NULL) {
        return false;
    }
    size_t la = strlen(a);
    size_t lb = strlen(b);
    // Compare over the longer length so the time does not tell where the
    // first difference is, nor (beyond the length) what the secret holds.
    size_t n = la > lb ? la : lb;
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0;
        unsigned char y = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}
