/* Standard base64 (RFC 4648 section 4, the "+/" alphabet). Encoding can run
 * over a buffer in pieces (a chunk list) through a small state; decoding
 * accepts missing padding. No allocation: the caller sizes `out` with the
 * macros below. */
#ifndef BW_CORE_BASE64_H
#define BW_CORE_BASE64_H

#include <stddef.h>

/* Output sizes: encoding n bytes (with padding, no NUL), and an upper
 * bound for decoding n characters. */
#define BW_BASE64_ENCODED_LEN(n) (((n) + 2) / 3 * 4)
#define BW_BASE64_DECODED_MAX(n) ((n) / 4 * 3 + 3)

/* Encoder state between pieces; start from {0}. */
typedef struct bw_base64_enc {
    unsigned char acc[3];
    size_t n;
} bw_base64_enc_t;

/* Encode in[n], carrying up to two bytes to the next call. Returns the
 * number of characters written to out (at most BW_BASE64_ENCODED_LEN(n + 2)). */
size_t bw_base64_encode_update(bw_base64_enc_t *e, const void *in, size_t n, char *out);
/* Flush the carried bytes with padding. Returns characters written (0 or 4). */
size_t bw_base64_encode_final(bw_base64_enc_t *e, char *out);
/* Encode in[n] at once into out[BW_BASE64_ENCODED_LEN(n)]. Returns the length. */
size_t bw_base64_encode(const void *in, size_t n, char *out);

/* Decode in[n] (padding optional, no whitespace) into
 * out[BW_BASE64_DECODED_MAX(n)]. Returns the decoded length, or BW_EINVAL
 * for a character outside the alphabet or an impossible length. */
long bw_base64_decode(const char *in, size_t n, unsigned char *out);

#endif /* BW_CORE_BASE64_H */
