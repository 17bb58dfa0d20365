#include <string.h>

#include "proto/encoder.h"

void swd_encoder_init(swd_encoder_t *e) {
    swd_buf_init(&e->buf);
    msgpack_packer_init(&e->pk, &e->buf, swd_buf_write_cb);
}

void swd_encoder_close(swd_encoder_t *e) {
    swd_buf_close(&e->buf);
}

void swd_encoder_reset(swd_encoder_t *e) {
    swd_buf_reset(&e->buf);
}

msgpack_packer *swd_enc_request(swd_encoder_t *e, uint64_t msgid, const char *method) {
    msgpack_pack_array(&e->pk, 4);
    msgpack_pack_uint8(&e->pk, 0);
    msgpack_pack_uint64(&e->pk, msgid);
    swd_pack_str(&e->pk, method);
    return &e->pk;
}

msgpack_packer *swd_enc_notify(swd_encoder_t *e, const char *method) {
    msgpack_pack_array(&e->pk, 3);
    msgpack_pack_uint8(&e->pk, 2);
    swd_pack_str(&e->pk, method);
    return &e->pk;
}

msgpack_packer *swd_enc_result(swd_encoder_t *e, uint64_t msgid) {
    msgpack_pack_array(&e->pk, 4);
    msgpack_pack_uint8(&e->pk, 1);
    msgpack_pack_uint64(&e->pk, msgid);
    msgpack_pack_nil(&e->pk);
    return &e->pk;
}

static void pack_error_head(swd_encoder_t *e, uint64_t msgid, swd_rpc_error_t code,
                            const char *message, uint32_t entries) {
    msgpack_pack_array(&e->pk, 4);
    msgpack_pack_uint8(&e->pk, 1);
    msgpack_pack_uint64(&e->pk, msgid);
    msgpack_pack_map(&e->pk, entries);
    swd_pack_kv_str(&e->pk, "code", swd_rpc_error_code(code));
    swd_pack_kv_str(&e->pk, "message", message ? message : swd_rpc_error_code(code));
}

void swd_enc_error(swd_encoder_t *e, uint64_t msgid, swd_rpc_error_t code, const char *message) {
    pack_error_head(e, msgid, code, message, 2);
    msgpack_pack_nil(&e->pk);
}

msgpack_packer *swd_enc_error_data(swd_encoder_t *e, uint64_t msgid, swd_rpc_error_t code,
                                   const char *message) {
    pack_error_head(e, msgid, code, message, 3);
    swd_pack_str(&e->pk, "data");
    return &e->pk;
}

void swd_enc_error_data_end(swd_encoder_t *e) {
    msgpack_pack_nil(&e->pk);
}
