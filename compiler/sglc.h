/*
 * compiler/sglc.h — .sglc bytecode files: encoding, decoding, verification.
 *
 * Layout: "SGLC" | u32 version | u64 body length | u32 CRC-32 of the body |
 * body; all integers little-endian. The body holds the modules (path, file,
 * globals) and every function (name, positions, parameters, code, lines,
 * constants, children by index, upvalue descriptors).
 *
 * The reader checks every count against the bytes left, the checksum, and
 * then verifies the bytecode (sglc_verify: operands in range, jumps inside
 * the function, functions ending in a return, the function tree well formed)
 * so that a damaged or hostile file is rejected with a message and can never
 * make the VM read out of bounds.
 */
#ifndef SGL_COMPILER_SGLC_H
#define SGL_COMPILER_SGLC_H

#include <stddef.h>

#include "compiler/chunk.h"

#define SGLC_MAGIC "SGLC"
#define SGLC_VERSION 1

/* Encodes into a malloc'd buffer (caller frees). 0, or -1 on out of memory. */
int sglc_encode(const Program *p, unsigned char **out, size_t *out_len);
/* Decodes and verifies. Returns 0 and *out, or -1 with a message in err. */
int sglc_decode(const unsigned char *buf, size_t len, Program **out, char *err, size_t errcap);
int sglc_save(const Program *p, const char *path, char *err, size_t errcap);
int sglc_load(const char *path, Program **out, char *err, size_t errcap);

/* Checks every instruction's operands against its function (registers below
 * maxstack, constants of the right kind, jumps inside the code, ...).
 * 0, or -1 with a message. */
int sglc_verify(const Program *p, char *err, size_t errcap);

#endif
