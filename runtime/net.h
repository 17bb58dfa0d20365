// Addresses: "HOST:PORT" (IPv4, [IPv6] or a name) to sockaddr and back.
#ifndef SWD_RUNTIME_NET_H
#define SWD_RUNTIME_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <uv.h>

/// Resolves `addr` ("127.0.0.1:7420", "[::1]:0", "localhost:80"): 0, or a
/// negative code with a reason in `err`.
int swd_net_parse(const char *addr, struct sockaddr_storage *out, char *err, size_t errlen);
/// Formats `sa` as "HOST:PORT" ("[::1]:7420" for IPv6).
void swd_net_format(const struct sockaddr *sa, char *buf, size_t cap);
/// The local address of a bound TCP handle as "HOST:PORT".
int swd_net_tcp_local(const uv_tcp_t *h, char *buf, size_t cap);
/// The peer address of a connected TCP handle as "HOST:PORT".
int swd_net_tcp_peer(const uv_tcp_t *h, char *buf, size_t cap);
/// Constant-time string equality, for secrets; NULL equals nothing.
bool swd_secret_eq(const char *a, const char *b);

#endif
