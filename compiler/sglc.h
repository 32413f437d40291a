/*
 * compiler/sglc.h — .sglc bytecode files: encoding, decoding, verification.
 *
 * Layout: "SGLC" | u32 version | u64 body length | u32 CRC-32 of the body |
 * body; all integers little-endian. The body holds the modules (path, file,
 * globals) and every function (name, positions, parameters and their
 * defaults' texts, code, lines, constants, children by index, upvalue
 * descriptors).
 *
 * The reader checks every count against the bytes left, the checksum, and
 * then verifies the bytecode (sglc_verify, compiler/sglc_verify.c), so that
 * a damaged or hostile file is rejected with a message and can never make
 * the VM read or write out of bounds: the VM does not check what the
 * verifier has proved.
 *
 * Errors are ERR_* codes (base/err.h) with a message in err[0..errcap):
 * ERR_IO (the file), ERR_FORMAT (not an .sglc file, truncated, checksum,
 * malformed structure), ERR_UNSUPPORTED (another format version),
 * ERR_BYTECODE (fails verification), ERR_NOMEM.
 */
#ifndef SGL_COMPILER_SGLC_H
#define SGL_COMPILER_SGLC_H

#include <stddef.h>

#include "compiler/chunk.h"

#define SGLC_MAGIC "SGLC"
#define SGLC_VERSION 2   /* 2: parameters' default texts */

/* Encodes into a malloc'd buffer (caller frees). 0, or ERR_NOMEM. */
int sglc_encode(const Program *p, unsigned char **out, size_t *out_len);
/* Decodes and verifies. 0 and *out (the caller frees it with
 * chunk_program_free), or an ERR_* code with *out NULL. */
int sglc_decode(const unsigned char *buf, size_t len, Program **out, char *err, size_t errcap);
int sglc_save(const Program *p, const char *path, char *err, size_t errcap);
int sglc_load(const char *path, Program **out, char *err, size_t errcap);

/* Proves what the VM assumes of a program's code and tables (the list is at
 * the top of compiler/sglc_verify.c). 0, or ERR_BYTECODE with a message
 * naming the function and the pc ("bad bytecode in function main (#1,
 * prog.sgl:3) at pc 7: ..."), or ERR_NOMEM. p is only read. */
int sglc_verify(const Program *p, char *err, size_t errcap);

#endif
