/*
 * runtime/rt.c — defaults of the model-call interface (runtime/rt.h).
 * The values are LANGUAGE.md §6's defaults; the VM starts every gen from them.
 */
#include <string.h>

#include "runtime/rt.h"

void rt_gen_params_default(RtGenParams *p)
{
    memset(p, 0, sizeof *p);
    p->max_tokens = 128;
    p->temperature = 1.0;
    p->top_p = 1.0;
    p->top_k = -1;
    p->min_p = 0.0;
    p->repetition_penalty = 1.0;
    p->constraint = RT_CONSTRAINT_NONE;
}
