/*
 * compiler/opcodes.c — the opcode facts table, generated from OPCODES.
 */
#include "compiler/opcodes.h"

#include <assert.h>

const OpInfo op_info[OP__COUNT] = {
#define OP_INFO(name, fmt, a, b, c, doc) {#name, fmt, OPK_##a, OPK_##b, OPK_##c, doc},
    OPCODES(OP_INFO)
#undef OP_INFO
};

#define OP_ONE(name, fmt, a, b, c, doc) +1
static_assert(0 OPCODES(OP_ONE) == OP__COUNT, "opcode table and enum disagree");
static_assert(OP__COUNT <= 256, "opcodes must fit in 8 bits");
#undef OP_ONE
