/*
 * compiler/opcodes.h — the SGL bytecode: instruction layout and the opcode
 * table, declared once (OPCODES below). The enum, the names, the operand
 * formats and operand kinds used by the disassembler and the .sglc verifier
 * are all generated from that one list.
 *
 * An instruction is 32 bits, opcode in the low byte (Lua style, but with an
 * 8-bit opcode and no k bit):
 *
 *    31      24 23      16 15       8 7        0
 *   +----------+----------+----------+----------+
 *   |    C     |    B     |    A     |    op    |   iABC
 *   |         Bx          |    A     |    op    |   iABx   (Bx unsigned 16)
 *   |         sBx         |    A     |    op    |   iAsBx  (Bx - OFFSET_sBx)
 *   |               sJ / Ax          |    op    |   isJ / iAx (24 bits)
 *   +----------+----------+----------+----------+
 *
 * Registers R[x] are slots of the current frame; K[x] the constants of the
 * function; Up[x] its captured variables; G[x] the top-level names of its
 * module; sB/sC are small signed immediates (B - OFFSET_sC). Jumps are
 * relative to the instruction after the jump.
 *
 * Conditional tests (EQ, LT, ..., TEST) are followed by a JMP: the test skips
 * the jump when its result differs from the flag, so the jump is taken when
 * the result equals the flag.
 */
#ifndef SGL_COMPILER_OPCODES_H
#define SGL_COMPILER_OPCODES_H

#include <stdint.h>

typedef uint32_t Instr;

/* Operand formats. */
typedef enum { iABC, iABx, iAsBx, isJ, iAx } OpFormat;

/* What an operand refers to (disassembly, verification). */
typedef enum {
    OPK_N,   /* unused */
    OPK_R,   /* register */
    OPK_K,   /* constant index */
    OPK_U,   /* unsigned count or literal */
    OPK_S,   /* signed immediate (sB/sC/sBx) */
    OPK_F,   /* flag 0/1 */
    OPK_J,   /* jump offset */
    OPK_P,   /* child function index */
    OPK_V,   /* upvalue index */
    OPK_G,   /* module global slot */
    OPK_M    /* module index */
} OpKind;

/*   name        format  A      B      C      semantics */
#define OPCODES(X) \
    X(MOVE,       iABC,  R, R, N, "R[A] := R[B]") \
    X(LOADK,      iABx,  R, K, N, "R[A] := K[Bx]") \
    X(LOADI,      iAsBx, R, S, N, "R[A] := sBx (an int)") \
    X(LOADNIL,    iABC,  R, U, N, "R[A], ..., R[A+B] := nil") \
    X(LOADTRUE,   iABC,  R, N, N, "R[A] := true") \
    X(LOADFALSE,  iABC,  R, N, N, "R[A] := false") \
    X(LFALSESKIP, iABC,  R, N, N, "R[A] := false; pc++") \
    X(GETUPVAL,   iABC,  R, V, N, "R[A] := Up[B]") \
    X(SETUPVAL,   iABC,  R, V, N, "Up[B] := R[A]") \
    X(GETGLOBAL,  iABx,  R, G, N, "R[A] := G[Bx]") \
    X(SETGLOBAL,  iABx,  R, G, N, "G[Bx] := R[A]") \
    X(IMPORT,     iABx,  R, M, N, "R[A] := module Bx (its top level runs first, once per instance)") \
    X(GETSTATE,   iABC,  R, N, N, "R[A] := the current prompt state") \
    X(NEWLIST,    iABC,  R, U, N, "R[A] := [R[A+1], ..., R[A+B]]") \
    X(LISTADD,    iABC,  R, U, N, "append R[A+1], ..., R[A+B] to the list R[A]") \
    X(NEWMAP,     iABC,  R, U, N, "R[A] := {R[A+1]: R[A+2], ...} (B pairs)") \
    X(MAPADD,     iABC,  R, U, N, "add the B pairs R[A+1]: R[A+2], ... to the map R[A]") \
    X(INDEX,      iABC,  R, R, R, "R[A] := R[B][R[C]]") \
    X(FIELD,      iABC,  R, R, K, "R[A] := R[B].K[C]") \
    X(SETINDEX,   iABC,  R, R, R, "R[A][R[B]] := R[C]") \
    X(SETFIELD,   iABC,  R, K, R, "R[A].K[B] := R[C]") \
    X(ADD,        iABC,  R, R, R, "R[A] := R[B] + R[C]") \
    X(SUB,        iABC,  R, R, R, "R[A] := R[B] - R[C]") \
    X(MUL,        iABC,  R, R, R, "R[A] := R[B] * R[C]") \
    X(DIV,        iABC,  R, R, R, "R[A] := R[B] / R[C]  (always a float)") \
    X(MOD,        iABC,  R, R, R, "R[A] := R[B] % R[C]  (sign of the divisor)") \
    X(ADDK,       iABC,  R, R, K, "R[A] := R[B] + K[C]") \
    X(SUBK,       iABC,  R, R, K, "R[A] := R[B] - K[C]") \
    X(MULK,       iABC,  R, R, K, "R[A] := R[B] * K[C]") \
    X(DIVK,       iABC,  R, R, K, "R[A] := R[B] / K[C]") \
    X(MODK,       iABC,  R, R, K, "R[A] := R[B] % K[C]") \
    X(ADDI,       iABC,  R, R, S, "R[A] := R[B] + sC") \
    X(UNM,        iABC,  R, R, N, "R[A] := -R[B]") \
    X(NOT,        iABC,  R, R, N, "R[A] := not R[B]") \
    X(RANGE,      iABC,  R, R, R, "R[A] := [R[B], R[B]+1, ..., R[C]-1]") \
    X(IN,         iABC,  R, R, R, "R[A] := R[B] in R[C]") \
    X(TOSTR,      iABC,  R, R, N, "R[A] := str(R[B])") \
    X(CONCAT,     iABC,  R, U, N, "R[A] := str(R[A]) + ... + str(R[A+B-1])") \
    X(EQ,         iABC,  R, R, F, "if ((R[A] == R[B]) ~= C) then pc++") \
    X(LT,         iABC,  R, R, F, "if ((R[A] <  R[B]) ~= C) then pc++") \
    X(LE,         iABC,  R, R, F, "if ((R[A] <= R[B]) ~= C) then pc++") \
    X(EQK,        iABC,  R, K, F, "if ((R[A] == K[B]) ~= C) then pc++") \
    X(EQI,        iABC,  R, S, F, "if ((R[A] == sB) ~= C) then pc++") \
    X(LTI,        iABC,  R, S, F, "if ((R[A] <  sB) ~= C) then pc++") \
    X(LEI,        iABC,  R, S, F, "if ((R[A] <= sB) ~= C) then pc++") \
    X(GTI,        iABC,  R, S, F, "if ((R[A] >  sB) ~= C) then pc++") \
    X(GEI,        iABC,  R, S, F, "if ((R[A] >= sB) ~= C) then pc++") \
    X(TEST,       iABC,  R, N, F, "if (truthy(R[A]) ~= C) then pc++") \
    X(JMP,        isJ,   J, N, N, "pc += sJ") \
    X(CALL,       iABC,  R, U, N, "R[A] := R[A](R[A+1], ..., R[A+B])") \
    X(CALLKW,     iABC,  R, U, U, "R[A] := R[A](R[A+1..A+B], name_i: R[A+B+i] for i in 1..C); names: K[next Ax]") \
    X(EXTRAARG,   iAx,   K, N, N, "operand of the previous instruction") \
    X(RETURN,     iABC,  R, N, N, "return R[A]") \
    X(RETURN0,    iABC,  N, N, N, "return nil") \
    X(CLOSURE,    iABx,  R, P, N, "R[A] := closure(child function Bx)") \
    X(CLOSE,      iABC,  R, N, N, "close captured variables in R[A], R[A+1], ...") \
    X(ARGDEF,     iAsBx, R, J, N, "if parameter A was passed then pc += sBx (skip its default)") \
    X(FORPREP,    iAsBx, R, J, N, "R[A], R[A+1] ints; if R[A] >= R[A+1] then pc += sBx else R[A+2] := R[A]") \
    X(FORLOOP,    iAsBx, R, J, N, "R[A] += 1; if R[A] < R[A+1] then { R[A+2] := R[A]; pc += sBx }") \
    X(ITERPREP,   iAsBx, R, J, N, "R[A] := what to walk (list; map -> its keys; string); R[A+1] := 0; pc += sBx") \
    X(ITERLOOP,   iAsBx, R, J, N, "if R[A] has an item at cursor R[A+1] then { R[A+2] := it; advance; pc += sBx }") \
    X(APPEND,     iABC,  R, N, N, "if R[A] is a string then append it to the state (else discard it)") \
    X(APPENDP,    iABC,  R, N, N, "append R[A] to the state: a string, nil (nothing) or an error") \
    X(APPENDK,    iABx,  N, K, N, "append the string K[Bx] to the state") \
    X(ROLEBEGIN,  iABC,  U, N, N, "open role block A (0 system, 1 user, 2 assistant)") \
    X(ROLEEND,    iABC,  U, N, N, "close role block A") \
    X(FORK,       iABC,  R, R, N, "R[A] := states of running closure R[B+1] on a copy of the state per item of R[B]")

typedef enum {
#define OP_ENUM(name, fmt, a, b, c, doc) OP_##name,
    OPCODES(OP_ENUM)
#undef OP_ENUM
    OP__COUNT
} OpCode;

/* Operand limits and the excess-K offsets of signed fields. */
#define MAXARG_A     255
#define MAXARG_B     255
#define MAXARG_C     255
#define MAXARG_Bx    0xffff
#define OFFSET_sBx   0x7fff
#define OFFSET_sC    127
#define MAXARG_sJ    0xffffff
#define OFFSET_sJ    0x7fffff
#define MAXARG_Ax    0xffffff

#define GET_OP(i)   ((OpCode)((i) & 0xffu))
#define GETARG_A(i) ((int)(((i) >> 8) & 0xffu))
#define GETARG_B(i) ((int)(((i) >> 16) & 0xffu))
#define GETARG_C(i) ((int)(((i) >> 24) & 0xffu))
#define GETARG_sB(i) (GETARG_B(i) - OFFSET_sC)
#define GETARG_sC(i) (GETARG_C(i) - OFFSET_sC)
#define GETARG_Bx(i) ((int)((i) >> 16))
#define GETARG_sBx(i) (GETARG_Bx(i) - OFFSET_sBx)
#define GETARG_sJ(i) ((int)((i) >> 8) - OFFSET_sJ)
#define GETARG_Ax(i) ((int)((i) >> 8))

#define CREATE_ABC(o, a, b, c) \
    ((Instr)(o) | ((Instr)(a) << 8) | ((Instr)(b) << 16) | ((Instr)(c) << 24))
#define CREATE_ABx(o, a, bx) ((Instr)(o) | ((Instr)(a) << 8) | ((Instr)(bx) << 16))
#define CREATE_sJ(o, j) ((Instr)(o) | ((Instr)((j) + OFFSET_sJ) << 8))
#define CREATE_Ax(o, ax) ((Instr)(o) | ((Instr)(ax) << 8))

/* Per-opcode facts generated from OPCODES. */
typedef struct {
    const char *name;
    OpFormat format;
    OpKind a, b, c;
    const char *doc;
} OpInfo;

extern const OpInfo op_info[OP__COUNT];

#endif
