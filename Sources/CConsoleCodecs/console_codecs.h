/* libcrypto for the remote console: DES (the VNC authentication challenge) and
 * SHA-1 (the WebSocket handshake). zlib (ZRLE) comes from CZlib. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <openssl/des.h>
#include <openssl/sha.h>
#include <openssl/rand.h>
#include <string.h>

/* VNC authentication: the 16-byte challenge encrypted as two DES-ECB blocks under
 * `key` (the password's bytes, already bit-reversed as VNC does). */
static inline void console_vnc_des(const unsigned char key[8], const unsigned char in[16], unsigned char out[16]) {
    DES_cblock k;
    DES_key_schedule schedule;
    memcpy(k, key, 8);
    DES_set_key_unchecked(&k, &schedule);
    DES_ecb_encrypt((const_DES_cblock *)in, (DES_cblock *)out, &schedule, DES_ENCRYPT);
    DES_ecb_encrypt((const_DES_cblock *)(in + 8), (DES_cblock *)(out + 8), &schedule, DES_ENCRYPT);
}
