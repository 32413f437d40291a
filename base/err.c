/*
 * base/err.c — messages and names of the error codes (see err.h).
 */
#include "base/err.h"

#include <stdio.h>

const char *err_str(int code)
{
    switch (code) {
    case ERR_OK: return "ok";
#define SGL_ERR_MSG(name, value, msg) case name: return msg;
    SGL_ERRORS(SGL_ERR_MSG)
#undef SGL_ERR_MSG
    }
    return "unknown error";
}

const char *err_name(int code)
{
    switch (code) {
    case ERR_OK: return "ERR_OK";
#define SGL_ERR_NAME(name, value, msg) case name: return #name;
    SGL_ERRORS(SGL_ERR_NAME)
#undef SGL_ERR_NAME
    }
    return "ERR_UNKNOWN";
}

int err_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
{
    if (buf && cap) vsnprintf(buf, cap, fmt, ap);
    return -1;
}

int err_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vfmt(buf, cap, fmt, ap);
    va_end(ap);
    return -1;
}
