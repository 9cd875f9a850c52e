// originalDst(fd) -> { address, port, family }: the destination a TCP connection had before
// netfilter's nat (an nft `redirect` or `dnat`) rewrote it, read from the socket's conntrack
// entry with getsockopt(SO_ORIGINAL_DST). Node exposes no way to make this call, hence the
// addon. Node-API only, so the binary works across Node versions without rebuilding.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/netfilter_ipv4.h> // SO_ORIGINAL_DST
#include <node_api.h>

// <linux/netfilter_ipv6/ip6_tables.h> defines this too (same value) but drags in x_tables.
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static napi_value fail(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "originalDst(fd): fd must be a non-negative integer");
    return NULL;
  }

  // The socket's own family decides the level: an IPv4 connection accepted on a dual-stack
  // IPv6 socket (local address ::ffff:a.b.c.d) has an IPv4 conntrack entry, read with SOL_IP.
  struct sockaddr_storage local;
  socklen_t len = sizeof local;
  if (getsockname(fd, (struct sockaddr *)&local, &len) != 0) return fail(env, "getsockname", errno);
  int v6 = local.ss_family == AF_INET6 &&
           !IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&local)->sin6_addr);

  struct sockaddr_storage dst;
  len = sizeof dst;
  memset(&dst, 0, sizeof dst);
  if (v6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, &len)
         : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len))
    return fail(env, v6 ? "getsockopt(IP6T_SO_ORIGINAL_DST)" : "getsockopt(SO_ORIGINAL_DST)", errno);

  char text[INET6_ADDRSTRLEN];
  uint16_t port;
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&dst;
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    port = ntohs(a->sin6_port);
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&dst;
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  }

  napi_value result, address, port_value, family;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &address) != napi_ok ||
      napi_create_uint32(env, port, &port_value) != napi_ok ||
      napi_create_uint32(env, v6 ? 6 : 4, &family) != napi_ok ||
      napi_set_named_property(env, result, "address", address) != napi_ok ||
      napi_set_named_property(env, result, "port", port_value) != napi_ok ||
      napi_set_named_property(env, result, "family", family) != napi_ok) {
    napi_throw_error(env, NULL, "originalDst: building the result failed");
    return NULL;
  }
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "originalDst", NAPI_AUTO_LENGTH, original_dst, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "originalDst", fn) != napi_ok)
    return NULL;
  return exports;
}
