/* CRC-32C (Castagnoli, reflected polynomial 0x82f63b78) for staged files: the writer
 * checksums every byte it writes, the reader verifies a file before a load starts.
 *
 * Portable slicing-by-8 tables (built once, thread-safe) handle any CPU; on x86-64 with
 * SSE4.2 the crc32 instruction is used instead. Both give identical results (the unit
 * test checks the active path against a bitwise reference; building with
 * -DSTAGE_CRC32C_PORTABLE forces the table path so it can be checked the same way). */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "stage.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(STAGE_CRC32C_PORTABLE)
#define HAVE_HW_CRC 1
#include <nmmintrin.h>
#endif

#define POLY 0x82f63b78u

static uint32_t table[8][256];
static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static uint32_t (*crc_impl)(uint32_t c, const unsigned char *p, size_t len);

/* c is the inverted running value in both implementations. */
static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t len)
{
    while (len >= 8) {
        /* Assembled byte by byte so the code is endian-neutral; compilers turn this
         * into one load on little-endian machines. */
        uint32_t lo = ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                       (uint32_t)p[3] << 24) ^ c;
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                      (uint32_t)p[7] << 24;
        c = table[7][lo & 0xff] ^ table[6][(lo >> 8) & 0xff] ^ table[5][(lo >> 16) & 0xff] ^
            table[4][lo >> 24] ^ table[3][hi & 0xff] ^ table[2][(hi >> 8) & 0xff] ^
            table[1][(hi >> 16) & 0xff] ^ table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#ifdef HAVE_HW_CRC
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const unsigned char *p,
                                                         size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8(c, *p++);
        len--;
    }
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len--)
        c = _mm_crc32_u8(c, *p++);
    return c;
}
#endif

static void init_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    crc_impl = crc_sw;
#ifdef HAVE_HW_CRC
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2"))
        crc_impl = crc_hw;
#endif
}

uint32_t stage_crc32c(uint32_t crc, const void *buf, size_t len)
{
    pthread_once(&init_once, init_tables);
    return ~crc_impl(~crc, buf, len);
}
