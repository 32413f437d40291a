/*
 * cli/engine.c — model options shared by the subcommands, and the engine
 * that serves a VM's gen/select calls.
 *
 * Programs reach a model through the runtime's backend (runtime/rt.h). The
 * engine that implements that backend over the inference runtime arrives
 * with the runtime's scheduler; until then a program that needs a model
 * fails at its first gen/select with the VM's "no model" error, and --model
 * is refused with a message that says why.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

struct CliEngine {
    int unused;
};

void cli_engine_options_init(CliEngineOptions *o)
{
    memset(o, 0, sizeof *o);
}

int cli_engine_parse_option(CliEngineOptions *o, int argc, char **argv, int *i)
{
    if (strcmp(argv[*i], "--model") != 0)
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sgl: --model needs a path\n");
        return -1;
    }
    o->model = argv[++*i];
    return 1;
}

int cli_engine_start(const CliEngineOptions *o, sgl_vm *vm, CliEngine **out)
{
    (void)vm;
    *out = NULL;
    if (o->model) {
        fprintf(stderr, "sgl: --model %s: programs cannot call a model in this build yet "
                        "(the runtime's scheduler is not built)\n", o->model);
        return 1;
    }
    return 0;
}

void cli_engine_report(CliEngine *e)
{
    (void)e;
}

void cli_engine_stop(CliEngine *e)
{
    (void)e;
}
