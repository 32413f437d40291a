/*
 * compiler/disasm.h — a readable listing of a program's bytecode.
 *
 * One block per function: a header (name, file:line:col, parameters,
 * registers, upvalues) then one line per instruction with its address,
 * source position, opcode, operands and a comment resolving constants,
 * jump targets, globals and child functions.
 */
#ifndef SGL_COMPILER_DISASM_H
#define SGL_COMPILER_DISASM_H

#include <stdio.h>

#include "compiler/chunk.h"

void disasm_program(const Program *p, FILE *out);
void disasm_proto(const Program *p, const Proto *f, FILE *out);

#endif
