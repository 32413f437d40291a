/*
 * runtime/rt.c — defaults of the model-call interface (runtime/rt.h) and
 * gen()'s option table as data (runtime/gen_options.h).
 *
 * Both are expansions of RT_GEN_OPTIONS, the one list of options: the
 * defaults are its dflt column (LANGUAGE.md §6), so the VM starts every gen
 * from the values the language reference documents.
 */
#include "runtime/rt.h"

#include <string.h>

#include "runtime/gen_options.h"

const RtGenOption rt_gen_options[RT_GEN_OPTION_COUNT] = {
#define RT_GEN_OPT_ENTRY(name, kind, lo, hi, dflt, openai, sglang) \
    {#name, RT_GEN_##kind, (double)(lo), (double)(hi), (double)(dflt), openai, sglang},
    RT_GEN_OPTIONS(RT_GEN_OPT_ENTRY)
#undef RT_GEN_OPT_ENTRY
};

_Static_assert(sizeof rt_gen_options / sizeof rt_gen_options[0] == RT_GEN_OPTION_COUNT,
               "one rt_gen_options entry per RT_GEN_OPTIONS line");

int rt_gen_option_find(const char *name)
{
    for (int i = 0; i < RT_GEN_OPTION_COUNT; i++)
        if (strcmp(rt_gen_options[i].name, name) == 0) return i;
    return -1;
}

/* A scalar kind's default: its RtGenParams field, whose C type the kind
 * fixes (checked here, so a field and its table line cannot disagree). */
#define SCALAR_DEFAULT(name, ctype, dflt)                                                       \
    _Static_assert(_Generic(((RtGenParams *)0)->name, ctype: 1, default: 0),                   \
                   "RtGenParams." #name " has the C type of its kind in RT_GEN_OPTIONS");      \
    p->name = (ctype)(dflt);
#define DEFAULT_INT(name, dflt) SCALAR_DEFAULT(name, int, dflt)
#define DEFAULT_NUM(name, dflt) SCALAR_DEFAULT(name, double, dflt)
#define DEFAULT_NUM_GT(name, dflt) SCALAR_DEFAULT(name, double, dflt)
#define DEFAULT_BOOL(name, dflt) SCALAR_DEFAULT(name, int, dflt)
/* the other kinds default to none: zero, as memset leaves them */
#define DEFAULT_SEED(name, dflt)
#define DEFAULT_NAME(name, dflt)
#define DEFAULT_STOP(name, dflt)
#define DEFAULT_STOP_IDS(name, dflt)
#define DEFAULT_REGEX(name, dflt)
#define DEFAULT_JSON(name, dflt)
#define DEFAULT_GRAMMAR(name, dflt)
#define DEFAULT_CHOICES(name, dflt)
#define DEFAULT_TYPE(name, dflt)

void rt_gen_params_default(RtGenParams *p)
{
    memset(p, 0, sizeof *p);
#define RT_GEN_OPT_DEFAULT(name, kind, lo, hi, dflt, openai, sglang) DEFAULT_##kind(name, dflt)
    RT_GEN_OPTIONS(RT_GEN_OPT_DEFAULT)
#undef RT_GEN_OPT_DEFAULT
    p->constraint = RT_CONSTRAINT_NONE;
}
