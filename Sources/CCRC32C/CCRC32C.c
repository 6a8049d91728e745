#include "CCRC32C.h"

#include <string.h>

// The reflected Castagnoli polynomial 0x1EDC6F41.
#define PORTOUT_CRC32C_POLYNOMIAL 0x82F63B78u

static uint32_t portout_crc32c_table[8][256];

static void portout_crc32c_build_table(void) {
    for (uint32_t byte = 0; byte < 256; byte++) {
        uint32_t crc = byte;
        for (int bit = 0; bit < 8; bit++) {
            crc = (crc & 1) ? (crc >> 1) ^ PORTOUT_CRC32C_POLYNOMIAL : crc >> 1;
        }
        portout_crc32c_table[0][byte] = crc;
    }
    for (int slice = 1; slice < 8; slice++) {
        for (int byte = 0; byte < 256; byte++) {
            uint32_t previous = portout_crc32c_table[slice - 1][byte];
            portout_crc32c_table[slice][byte] = (previous >> 8) ^ portout_crc32c_table[0][previous & 0xFF];
        }
    }
}

// Slicing-by-8: eight table lookups per eight bytes.
static uint32_t portout_crc32c_software(uint32_t crc, const uint8_t *bytes, size_t length) {
    while (length >= 8) {
        uint32_t low;
        uint32_t high;
        memcpy(&low, bytes, 4);
        memcpy(&high, bytes + 4, 4);
        low ^= crc;
        crc = portout_crc32c_table[7][low & 0xFF] ^ portout_crc32c_table[6][(low >> 8) & 0xFF]
            ^ portout_crc32c_table[5][(low >> 16) & 0xFF] ^ portout_crc32c_table[4][low >> 24]
            ^ portout_crc32c_table[3][high & 0xFF] ^ portout_crc32c_table[2][(high >> 8) & 0xFF]
            ^ portout_crc32c_table[1][(high >> 16) & 0xFF] ^ portout_crc32c_table[0][high >> 24];
        bytes += 8;
        length -= 8;
    }
    while (length > 0) {
        crc = (crc >> 8) ^ portout_crc32c_table[0][(crc ^ *bytes) & 0xFF];
        bytes++;
        length--;
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t portout_crc32c_sse42(uint32_t crc, const uint8_t *bytes, size_t length) {
    uint64_t wide = crc;
    while (length >= 8) {
        uint64_t word;
        memcpy(&word, bytes, 8);
        wide = __builtin_ia32_crc32di(wide, word);
        bytes += 8;
        length -= 8;
    }
    uint32_t narrow = (uint32_t)wide;
    while (length > 0) {
        narrow = __builtin_ia32_crc32qi(narrow, *bytes);
        bytes++;
        length--;
    }
    return narrow;
}
#endif

typedef uint32_t (*portout_crc32c_function)(uint32_t, const uint8_t *, size_t);

// Chosen once, before main, so that every call after it reads a pointer that no thread writes.
static portout_crc32c_function portout_crc32c_implementation = portout_crc32c_software;

__attribute__((constructor))
static void portout_crc32c_choose(void) {
    portout_crc32c_build_table();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("sse4.2")) {
        portout_crc32c_implementation = portout_crc32c_sse42;
    }
#endif
}

uint32_t portout_crc32c(uint32_t crc, const void *bytes, size_t length) {
    if (bytes == NULL || length == 0) {
        return crc;
    }
    return ~portout_crc32c_implementation(~crc, (const uint8_t *)bytes, length);
}

uint32_t portout_crc32c_portable(uint32_t crc, const void *bytes, size_t length) {
    if (bytes == NULL || length == 0) {
        return crc;
    }
    return ~portout_crc32c_software(~crc, (const uint8_t *)bytes, length);
}
