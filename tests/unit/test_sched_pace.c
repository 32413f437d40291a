/* tests/unit/test_sched_pace.c — the scheduler's pace of mixed steps
 * (runtime/engine_internal.h: SchedPace): how many prompt tokens may join
 * a step beside decode tokens. The pace is fed step costs from a model of
 * the machine here (t = fixed + per_row * rows), so every expected budget
 * is exact arithmetic, never a timing. The engine's use of it is in
 * test_engine.c (mixed steps take what the pace allows). */
#include <criterion/criterion.h>
#include <math.h>

#include "runtime/engine_internal.h"

/* A machine where a step costs fixed_s + row_s * rows. */
static double step_cost(double fixed_s, double row_s, int rows) { return fixed_s + row_s * rows; }

/* Runs `steps` mixed steps on that machine; returns the last budget. */
static int settle(SchedPace *p, int chunk, int n_decode, double fixed_s, double row_s, int steps)
{
    int b = 0;
    for (int i = 0; i < steps; i++) {
        b = sched_pace_budget(p, chunk, n_decode);
        sched_pace_record(p, n_decode + b, b, step_cost(fixed_s, row_s, n_decode + b));
    }
    return b;
}

Test(pace, whole_chunks_without_decodes_or_measurements_or_target)
{
    SchedPace p;
    sched_pace_init(&p, 50);
    cr_assert_eq(sched_pace_budget(&p, 512, 8), 512, "nothing measured yet: the chunk");
    sched_pace_record(&p, 520, 512, 0.5);
    cr_assert_eq(sched_pace_budget(&p, 512, 0), 512, "no decodes to protect: the chunk");
    cr_assert_lt(sched_pace_budget(&p, 512, 8), 512, "decodes running: capped");
    SchedPace off;
    sched_pace_init(&off, 0);
    sched_pace_record(&off, 520, 512, 0.5);
    cr_assert_eq(sched_pace_budget(&off, 512, 8), 512, "target 0: off");
}

Test(pace, steps_without_prompt_tokens_are_not_measured)
{
    SchedPace p;
    sched_pace_init(&p, 50);
    sched_pace_record(&p, 8, 0, 0.030);
    cr_assert_eq(p.row_s, 0);
    cr_assert_eq(sched_pace_budget(&p, 512, 8), 512);
}

/* From a measurement at a whole chunk (cheap per row: the fixed cost is
 * spread over 520 rows) the budget moves to the rows where a step takes
 * the target: 4 ms + 1 ms a row, 8 decodes, 50 ms → 46 rows, 38 prompt. */
Test(pace, settles_where_the_step_takes_the_target)
{
    SchedPace p;
    sched_pace_init(&p, 50);
    double fixed = 0.004, row = 0.001;
    sched_pace_record(&p, 520, 512, step_cost(fixed, row, 520));
    int b = settle(&p, 512, 8, fixed, row, 40);
    cr_assert(b >= 37 && b <= 38, "budget %d, want 38 (or 37: the fraction is cut)", b);
    double t = step_cost(fixed, row, 8 + b);
    cr_assert(fabs(t - 0.050) <= 0.0015, "step %.4f s, target 0.050", t);
}

/* A machine 10x faster a row gets ten times the rows (capped by the chunk
 * when it is faster still). */
Test(pace, follows_the_machine_and_stays_within_the_chunk)
{
    SchedPace p;
    sched_pace_init(&p, 50);
    sched_pace_record(&p, 40, 32, 0.040);
    int b = settle(&p, 512, 8, 0.004, 0.0001, 60);
    cr_assert(b >= 450 && b <= 452, "budget %d, want 452 (50 ms at 4 ms + 0.1 ms a row, less 8 decodes)", b);
    b = settle(&p, 512, 8, 0.001, 0.00001, 60);
    cr_assert_eq(b, 512, "never more than the chunk");
}

/* Decodes alone over the target: prompts still progress by the minimum. */
Test(pace, prompts_always_progress)
{
    SchedPace p;
    sched_pace_init(&p, 50);
    sched_pace_record(&p, 80, 16, 0.120);
    cr_assert_eq(settle(&p, 512, 64, 0.060, 0.001, 20), ENG_MIN_MIXED_PROMPT);
    cr_assert_eq(sched_pace_budget(&p, 8, 64), 8, "a chunk smaller than the minimum is the chunk");
}
