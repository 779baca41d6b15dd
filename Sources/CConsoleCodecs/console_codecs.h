/* System libraries the remote console uses: zlib (ZRLE) and libcrypto's DES
 * (the VNC authentication challenge) and SHA-1 (the WebSocket handshake). */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <zlib.h>
#include <openssl/des.h>
#include <openssl/sha.h>
#include <openssl/rand.h>
