/* cli/suggest.c — "did you mean" for the command line: unknown options
 * against the flags a command's help names (cli.h). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int cli_unknown_option(const char *cmd, const char *opt, const char *help)
{
    /* every "--word" in the help text, in order, as a candidate */
    enum { MAXF = 96, MAXLEN = 40 };
    static char flags[MAXF][MAXLEN];
    const char *cands[MAXF];
    size_t n = 0;
    for (const char *p = help; p && (p = strstr(p, "--")) && n < MAXF;) {
        size_t len = 2;
        while ((p[len] >= 'a' && p[len] <= 'z') || (p[len] >= '0' && p[len] <= '9') || p[len] == '-') len++;
        if (len > 2 && len < MAXLEN && (p == help || p[-1] != '-')) {
            memcpy(flags[n], p, len);
            flags[n][len] = 0;
            cands[n] = flags[n];
            n++;
        }
        p += len;
    }
    const char *s = opt && opt[0] == '-' ? sgl_suggest(opt, cands, n) : NULL;
    if (s) fprintf(stderr, "sgl %s: unknown option %s (did you mean '%s'?)\n", cmd, opt, s);
    else fprintf(stderr, "sgl %s: unknown option %s (see sgl %s --help)\n", cmd, opt, cmd);
    return 64;
}
