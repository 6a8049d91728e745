#ifndef PORTOUT_CCRC32C_H
#define PORTOUT_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

// CRC-32C (Castagnoli) of `length` bytes, continuing from `crc` (0 to start). Uses the SSE 4.2 crc32
// instruction when the CPU has it, and a table otherwise; both give the same result.
uint32_t portout_crc32c(uint32_t crc, const void *_Nullable bytes, size_t length);

// The same checksum from the table alone, whatever the CPU, so that tests can compare the two paths.
uint32_t portout_crc32c_portable(uint32_t crc, const void *_Nullable bytes, size_t length);

#endif
