/*
 * tests/fuzz/fuzz_sglc.c — libFuzzer target over the .sglc loader and the
 * VM behind it: a program the verifier accepts must run without a crash,
 * whatever its bytes.
 *
 * The input is a .sglc body. The harness writes the header (magic,
 * version, length, CRC-32) around it, so the fuzzer is never stopped by
 * the checksum and explores the decoder and compiler/sglc_verify.c. What
 * they accept is listed (disasm, to /dev/null), linked and run on a fresh
 * VM with the built-ins, the chat template "chatml" for role blocks and no
 * model: gen and select raise "no model". main (or the top level alone)
 * runs with nil for the required parameters and the defaults for the rest.
 *
 * The VM has no instruction budget and no memory limit of its own, so the
 * harness bounds a run itself, outside the VM:
 *
 *   time     BUDGET_MS of this thread's CPU time; then a signal handler
 *            overwrites every instruction start of the program with
 *            POISON, an EXTRAARG (the VM raises "bad bytecode (EXTRAARG
 *            executed)" at the next fetch, and every fiber ends with an
 *            error). Operand words are left alone: FIELD/SETFIELD/CALLKW
 *            read theirs after the fetch. POISON's sJ field is 0, so a test
 *            that runs it as its JMP goes on to the next word, poisoned too.
 *   memory   ASan refuses single allocations above 256 MiB (returning NULL:
 *            the VM's "out of memory" paths), see __asan_default_options.
 *   counts   an instruction that loops in C over a count the program
 *            chooses cannot be stopped between instructions: RANGE and FORK
 *            run only with small literal operands (LOADIs just before them,
 *            no jump in between), and a program that names the range()
 *            built-in is not run (cheap_to_run). Loading, verifying and
 *            listing still happen for every input.
 *
 * Most byte-level mutations break the file's structure, so half of the
 * mutations are made on the decoded program instead (mutate_program): an
 * instruction's opcode or operand, a header field, a constant or an
 * upvalue descriptor changes, and the program is encoded again. Those
 * inputs are near misses of valid programs: what a verifier must refuse.
 *
 * SGL_FUZZ_STATS=1 prints, at exit, how many inputs were accepted, run,
 * and stopped by the budget.
 *
 * Build and run: `make fuzz-sglc` (FUZZ_SECONDS=N); the seed corpus is
 * every program of the tree compiled with `sgl compile`, header stripped,
 * and tests/fuzz/sglc_regress/ (reproducers of fixed crashes).
 */
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "compiler/disasm.h"
#include "compiler/sglc.h"
#include "vm/builtins.h"
#include "vm/chat.h"
#include "vm/gen.h"
#include "vm/vm.h"

#define BUDGET_MS 20
#define BUDGET_SIGNAL (SIGRTMIN + 5)
#define RANGE_CHEAP 64     /* items of a RANGE the harness runs */
#define FORK_CHEAP 4       /* branches of a FORK the harness runs */
#define POISON CREATE_Ax(OP_EXTRAARG, OFFSET_sJ)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
const char *__asan_default_options(void);

const char *__asan_default_options(void) { return "max_allocation_size_mb=256:allocator_may_return_null=1"; }

/* ---- the time budget ---- */

static timer_t budget_timer;
/* The instruction starts of the program running now (poison_n of them);
 * written before the timer is armed, read by the handler. */
static Instr **poison_at;
static volatile size_t poison_n;

/* Inputs seen, programs accepted, run, and run out of budget. */
static size_t n_inputs, n_accepted, n_run, n_poisoned;

static void print_stats(void)
{
    fprintf(stderr, "fuzz_sglc: %zu inputs, %zu accepted, %zu run, %zu stopped by the budget\n", n_inputs, n_accepted,
            n_run, n_poisoned);
}

static void on_budget(int sig)
{
    (void)sig;
    if (poison_n) n_poisoned++;
    for (size_t i = 0; i < poison_n; i++) __atomic_store_n(poison_at[i], (Instr)POISON, __ATOMIC_RELAXED);
}

static void budget_arm(int ms)
{
    struct itimerspec t = {.it_value = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L}};
    timer_settime(budget_timer, 0, &t, NULL);
}

static bool takes_extraarg(Instr i)
{
    OpCode op = GET_OP(i);
    return op == OP_CALLKW || (op == OP_FIELD && GETARG_C(i) == MAXARG_C) ||
           (op == OP_SETFIELD && GETARG_B(i) == MAXARG_B);
}

/* Collects the instruction starts of p into poison_at; false on no memory. */
static bool poison_prepare(const Program *p)
{
    size_t n = 0;
    for (int i = 0; i < p->nprotos; i++) n += (size_t)p->protos[i]->ncode;
    poison_at = malloc((n ? n : 1) * sizeof(Instr *));
    if (!poison_at) return false;
    size_t k = 0;
    for (int i = 0; i < p->nprotos; i++) {
        Proto *f = p->protos[i];
        for (int pc = 0; pc < f->ncode; pc += takes_extraarg(f->code[pc]) ? 2 : 1) poison_at[k++] = &f->code[pc];
    }
    poison_n = k;
    return true;
}

static void poison_release(void)
{
    poison_n = 0;
    free(poison_at);
    poison_at = NULL;
}

/* ---- which accepted programs are cheap enough to run ---- */

static bool is_test(OpCode op)
{
    return op == OP_EQ || op == OP_LT || op == OP_LE || op == OP_EQK || op == OP_EQI || op == OP_LTI || op == OP_LEI ||
           op == OP_GTI || op == OP_GEI || op == OP_TEST;
}

/* target[pc]: control can arrive at pc other than from pc - 1. */
static void mark_targets(const Proto *f, uint8_t *target)
{
    for (int pc = 0; pc < f->ncode; pc++) {
        Instr i = f->code[pc];
        OpCode op = GET_OP(i);
        int to = -1;
        if (op == OP_JMP) to = pc + 1 + GETARG_sJ(i);
        else if (op == OP_ARGDEF || op == OP_FORPREP || op == OP_FORLOOP || op == OP_ITERPREP || op == OP_ITERLOOP)
            to = pc + 1 + GETARG_sBx(i);
        else if (op == OP_LFALSESKIP || is_test(op)) to = pc + 2;
        if (to >= 0 && to < f->ncode) target[to] = 1;
    }
}

/* The value a LOADI at pc loads into register r, if it is one. */
static bool loadi_of(const Proto *f, int pc, int r, int *value)
{
    Instr i = f->code[pc];
    if (GET_OP(i) != OP_LOADI || GETARG_A(i) != r) return false;
    *value = GETARG_sBx(i);
    return true;
}

/* RANGE A B C and FORK A B with their operands loaded by the two
 * instructions just before, which nothing jumps between. */
static bool counted_op_cheap(const Proto *f, int pc, const uint8_t *target)
{
    Instr i = f->code[pc];
    int b = GETARG_B(i), c = GETARG_C(i), lo, hi, n;
    if (GET_OP(i) == OP_RANGE && b == c) return true;   /* empty */
    if (pc < 2 || target[pc] || target[pc - 1]) return false;
    if (GET_OP(i) == OP_RANGE) {
        bool ok = (loadi_of(f, pc - 2, b, &lo) && loadi_of(f, pc - 1, c, &hi)) ||
                  (loadi_of(f, pc - 2, c, &hi) && loadi_of(f, pc - 1, b, &lo));
        return ok && hi - lo <= RANGE_CHEAP;
    }
    Instr cl = f->code[pc - 1];
    return GET_OP(cl) == OP_CLOSURE && GETARG_A(cl) == b + 1 && loadi_of(f, pc - 2, b, &n) && n >= 0 &&
           n <= FORK_CHEAP;
}

static bool cheap_to_run(const Program *p)
{
    for (int fi = 0; fi < p->nprotos; fi++) {
        const Proto *f = p->protos[fi];
        for (int k = 0; k < f->nconsts; k++)
            if (f->consts[k].kind == KC_BUILTIN && strcmp(f->consts[k].s, "range") == 0) return false;
        uint8_t *target = calloc((size_t)f->ncode, 1);
        if (!target) return false;
        mark_targets(f, target);
        bool ok = true;
        for (int pc = 0; pc < f->ncode && ok; pc++) {
            OpCode op = GET_OP(f->code[pc]);
            if (op == OP_RANGE || op == OP_FORK) ok = counted_op_cheap(f, pc, target);
        }
        free(target);
        if (!ok) return false;
    }
    return true;
}

/* ---- running ---- */

static FILE *devnull;

static void discard(void *ud, const char *s, size_t n)
{
    (void)ud;
    (void)s;
    (void)n;
}

static void run_program(Program *p)
{
    VM *vm = vm_new();
    Chat *chat = chat_new();
    Heap kheap;
    heap_init(&kheap);
    const char *stdlib = getenv("SGL_STDLIB");
    char err[256];
    if (vm && chat && vm_add_natives(vm, builtin_table, builtin_count) == 0 &&
        vm_add_natives(vm, gen_natives, gen_native_count) == 0 &&
        chat_configure(vm, chat, "chatml", stdlib ? stdlib : "stdlib") == 0 &&
        vm_link(vm, p, &kheap, err, sizeof err) == 0 && poison_prepare(p)) {
        vm_set_output(vm, discard, NULL);
        vm_set_role_hooks(vm, &chat_role_hooks, chat);
        /* main, as sgl run finds it (vm/api.c), else the top level alone */
        const Module *m0 = &p->mods[0];
        int slot = chunk_find_global(m0, "main");
        const Proto *entry = slot >= 0 && m0->global_fn[slot] >= 0 ? p->protos[m0->global_fn[slot]] : NULL;
        if (!entry) slot = -1;
        Value args[64];
        int nargs = entry ? entry->nparams : 0;
        for (int i = 0; i < nargs; i++) args[i] = val_nil();
        n_run++;
        budget_arm(BUDGET_MS);
        VmRun *r = vm_run_new(vm, p, slot, args, nargs, entry ? entry->required : 0, NULL);
        if (r) {
            vm_run_all(vm);
            vm_run_free(vm, r);
        }
        budget_arm(0);
        poison_release();
    }
    if (chat) chat_free(vm, chat);
    vm_free(vm);
    heap_free_all(&kheap);
}

/* ---- the input ---- */

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    if (!table[1])
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t c = v;
            for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[v] = c;
        }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* The .sglc file a writer would make of body[0..size): magic, version,
 * length and CRC-32, then the body. Malloc'd, size + 20 bytes; NULL on no
 * memory. */
static unsigned char *wrap_body(const uint8_t *body, size_t size)
{
    unsigned char *buf = malloc(size + 20);
    if (!buf) return NULL;
    uint32_t version = SGLC_VERSION, crc = crc32_of(body, size);
    uint64_t len = size;
    memcpy(buf, SGLC_MAGIC, 4);
    for (int k = 0; k < 4; k++) buf[4 + k] = (unsigned char)(version >> (8 * k));
    for (int k = 0; k < 8; k++) buf[8 + k] = (unsigned char)(len >> (8 * k));
    for (int k = 0; k < 4; k++) buf[16 + k] = (unsigned char)(crc >> (8 * k));
    if (size) memcpy(buf + 20, body, size);
    return buf;
}

/* ---- mutations of a decoded program ---- */

static uint32_t rnd_state;

static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return n ? (rnd_state >> 8) % n : 0;
}

/* An operand value: mostly near the edges the verifier checks. */
static int rnd_operand(int limit)
{
    switch (rnd(4)) {
    case 0: return (int)rnd(256);
    case 1: return limit > 0 ? limit - 1 + (int)rnd(3) : (int)rnd(3);
    default: return (int)rnd((uint32_t)(limit > 0 ? limit : 1) + 2);
    }
}

static void mutate_instr(Proto *f, int pc)
{
    Instr i = f->code[pc];
    int op = GET_OP(i), a = GETARG_A(i), b = GETARG_B(i), c = GETARG_C(i);
    switch (rnd(7)) {
    case 0: op = (int)rnd(OP__COUNT); break;
    case 1: a = rnd_operand(f->maxstack); break;
    case 2: b = rnd_operand(f->maxstack); break;
    case 3: c = rnd_operand(f->nconsts > f->maxstack ? f->nconsts : f->maxstack); break;
    case 4: {   /* a jump somewhere in the function */
        int to = (int)rnd((uint32_t)f->ncode + 2) - 1;
        if (op == OP_JMP) {
            f->code[pc] = CREATE_sJ(OP_JMP, to - pc - 1);
            return;
        }
        f->code[pc] = CREATE_ABx(op, a, (to - pc - 1 + OFFSET_sBx) & 0xffff);
        return;
    }
    case 5: f->code[pc] = f->code[rnd((uint32_t)f->ncode)]; return;
    default: {   /* swap with a neighbour */
        int q = pc + 1 < f->ncode ? pc + 1 : pc;
        f->code[pc] = f->code[q];
        f->code[q] = i;
        return;
    }
    }
    f->code[pc] = CREATE_ABC(op, a & 0xff, b & 0xff, c & 0xff);
}

static void mutate_proto(Program *p, Proto *f)
{
    switch (rnd(8)) {
    case 0: f->maxstack += (int)rnd(3) - 1; break;
    case 1: f->required ^= (uint64_t)1 << rnd(64); break;
    case 2:
        if (f->nupvals) {
            UpvalDesc *u = &f->upvals[rnd((uint32_t)f->nupvals)];
            if (rnd(2)) u->instack ^= 1;
            else u->idx = (uint8_t)rnd_operand(f->maxstack);
        }
        break;
    case 3:
        if (f->nconsts) {   /* another kind with the same payload fields */
            Const *k = &f->consts[rnd((uint32_t)f->nconsts)];
            if (k->kind == KC_INT) k->i = (int64_t)rnd(1u << 31) - (rnd(2) ? (int64_t)1 << 62 : 0);
            else if (k->kind == KC_FLOAT) k->kind = KC_INT;
            else if (k->kind == KC_STRING && k->len) k->s[rnd((uint32_t)k->len)] = (char)rnd(256);
        }
        break;
    case 4: f->module = (int)rnd((uint32_t)p->nmods + 1); break;
    default:
        for (int n = 1 + (int)rnd(2); n > 0; n--) mutate_instr(f, (int)rnd((uint32_t)f->ncode));
        break;
    }
}

/* A structural mutation of the program in data, written back as a body;
 * 0 when data is not a valid program or the result does not fit. */
static size_t mutate_program(uint8_t *data, size_t size, size_t max_size)
{
    unsigned char *buf = wrap_body(data, size);
    if (!buf) return 0;
    Program *p = NULL;
    char err[512];
    size_t out = 0;
    int ok = sglc_decode(buf, size + 20, &p, err, sizeof err) == 0;
    free(buf);
    if (!ok) return 0;
    mutate_proto(p, p->protos[rnd((uint32_t)p->nprotos)]);
    unsigned char *enc;
    size_t len;
    if (sglc_encode(p, &enc, &len) == 0) {
        if (len - 20 <= max_size) {
            memcpy(data, enc + 20, len - 20);
            out = len - 20;
        }
        free(enc);
    }
    chunk_program_free(p);
    return out;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    rnd_state = seed;
    if (rnd(2)) {
        size_t n = mutate_program(data, size, max_size);
        if (n) return n;
    }
    return LLVMFuzzerMutate(data, size, max_size);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    devnull = fopen("/dev/null", "w");
    if (getenv("SGL_FUZZ_STATS")) atexit(print_stats);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_budget;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(BUDGET_SIGNAL, &sa, NULL);
    /* this thread's CPU time, signalled to this thread: the handler never
     * runs beside the code it rewrites */
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = BUDGET_SIGNAL;
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &budget_timer) != 0) {
        perror("fuzz_sglc: timer_create");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *buf = wrap_body(data, size);
    if (!buf) return 0;
    Program *p = NULL;
    char err[512];
    int rc = sglc_decode(buf, size + 20, &p, err, sizeof err);
    free(buf);
    n_inputs++;
    if (rc < 0) return 0;
    n_accepted++;
    if (devnull) disasm_program(p, devnull);
    if (cheap_to_run(p)) run_program(p);
    chunk_program_free(p);
    return 0;
}
