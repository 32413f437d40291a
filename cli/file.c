/*
 * cli/file.c — reading a whole file, for the commands that take one
 * (sgl check's constraint and text, sgl run --args).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cli.h"

char *cli_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
            }
        }
    }
    int bad = ferror(f), saved = errno;
    fclose(f);
    if (!buf || bad) {
        free(buf);
        errno = bad ? saved : ENOMEM;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
