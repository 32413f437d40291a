/*
 * cli/cli.h — what the subcommands share: the options that pick and start a
 * model (the engine), and the engine-backed subcommands' hooks.
 */
#ifndef SGL_CLI_H
#define SGL_CLI_H

#include "sgl.h"

#define SGL_VERSION_STRING "0.1.0"

/* Subcommands that need the inference engine, added to main's table. */
#define CLI_ENGINE_COMMANDS(X)

/* Lines added to `sgl run --help`. */
#define CLI_ENGINE_RUN_HELP \
    "  --model PATH       a GGUF file or Hugging Face directory\n"

typedef struct {
    const char *model;          /* --model, or NULL */
} CliEngineOptions;

typedef struct CliEngine CliEngine;

void cli_engine_options_init(CliEngineOptions *o);

/* If argv[*i] is an engine option, consumes it (and its value, advancing *i)
 * and returns 1; returns 0 if it is not one; -1 (message printed) if its
 * value is missing or bad. */
int cli_engine_parse_option(CliEngineOptions *o, int argc, char **argv, int *i);

/* Starts the engine the options ask for and attaches it to the VM as its
 * model backend. Returns 0, or an exit status after printing the error. */
int cli_engine_start(const CliEngineOptions *o, sgl_vm *vm, CliEngine **out);

/* Prints --stats figures, if asked for. */
void cli_engine_report(CliEngine *e);

void cli_engine_stop(CliEngine *e);

#endif
