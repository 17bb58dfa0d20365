// The bridge between msgpack objects and JSON (jansson), for swarmctl's
// `--json` output and JSON input, the HTTP status endpoint and JSON-lines
// files. No JSON is written or parsed by hand anywhere else.
//
//   msgpack_object ──swd_json_from_msgpack──▶ json_t ──swd_json_pack──▶ msgpack_packer
//                                                ▲
//                         JSON text ──jansson────┘ (swd_json_pack_string)
//
// Mapping, msgpack → JSON:
//   nil, bool, str        → null, true/false, string (bad UTF-8 bytes become U+FFFD)
//   int                   → integer, exact; a uint above INT64_MAX → real
//   float32/float64       → real; NaN and ±Inf → null (JSON has none)
//   bin                   → string when valid UTF-8, else its base64 (RFC 4648)
//   ext                   → null
//   array                 → array
//   map                   → object; a str key is used as is, other keys are
//                           stringified (ints in decimal, nil/bools as their
//                           JSON words, containers as compact JSON text);
//                           when keys repeat, the last one wins.
// JSON → msgpack: null, bools, integers (exact 64-bit), reals (float64),
// strings (str), arrays, objects (maps with str keys, in document order).
#ifndef SWD_PROTO_JSON_H
#define SWD_PROTO_JSON_H

#include <jansson.h>
#include <msgpack.h>
#include <stddef.h>

/// Deepest nesting either direction converts; deeper input is refused.
#define SWD_JSON_MAX_DEPTH 1024

/// A new JSON value (the caller owns the reference) for `o`; NULL only when
/// `o` is NULL or nests deeper than SWD_JSON_MAX_DEPTH.
json_t *swd_json_from_msgpack(const msgpack_object *o);

/// Packs `j` as exactly one msgpack object: 0, SWD_EPARAMS when `j` is NULL
/// or nests deeper than SWD_JSON_MAX_DEPTH (nothing is packed then), or -EIO
/// when the packer's write callback fails (a partial object may be written).
int swd_json_pack(msgpack_packer *pk, const json_t *j);

/// Parses the JSON document `text` (any value at the top level; "\u0000" in
/// strings allowed) and packs it as one object. On a parse error returns
/// SWD_EPARAMS, packs nothing and writes "line L, column C: reason" into
/// `err` (which may be NULL when `errlen` is 0).
int swd_json_pack_string(msgpack_packer *pk, const char *text, char *err, size_t errlen);

/// Dump flags for `j`: JSON_REAL_PRECISION(p) with the smallest p at which
/// every real in `j` reads back exactly, so 0.6 prints as 0.6, not as
/// 0.59999999999999998. OR the result into json_dumps()' flags.
size_t swd_json_real_flags(const json_t *j);

#endif
