/*
 * base/err.h — the one list of error codes of the library rooms, and the
 * one helper that writes an error message.
 *
 * Every library function that can fail returns 0 (or a count) on success
 * and one of these negative codes on failure, as libuv does; err_str gives
 * the code's message, err_name its identifier. The codes are declared once
 * (SGL_ERRORS) and the enum, the names and the messages come from it. A
 * room that has more to say (which tensor is missing, which line of a
 * file) writes that into a caller's buffer with err_fmt; the code says what
 * kind of failure it was.
 *
 * The public API (include/sgl.h) maps these onto its own sgl_status values;
 * nothing outside the library sees them. Pure; any thread.
 */
#ifndef SGL_BASE_ERR_H
#define SGL_BASE_ERR_H

#include <stdarg.h>
#include <stddef.h>

/* X(name, value, message) */
#define SGL_ERRORS(X)                                                                     \
    X(ERR_ARG, -1, "invalid argument")                                                    \
    X(ERR_NOMEM, -2, "out of memory")                                                     \
    X(ERR_IO, -3, "cannot read file")                                                     \
    X(ERR_FORMAT, -4, "malformed data")                                                   \
    X(ERR_UNSUPPORTED, -5, "not supported")                                               \
    X(ERR_REGEX, -6, "regular expression failed")                                         \
    X(ERR_ALL_MASKED, -7, "no token is allowed (mask and min_tokens leave nothing)")      \
    X(ERR_VOCAB, -8, "token id outside the vocabulary")                                   \
    X(ERR_NO_SLOTS, -9, "not enough KV slots (free + evictable)")                         \
    X(ERR_UNLOCKED, -10, "unlock of a path that is not locked")                           \
    X(ERR_CORRUPT, -11, "internal structure inconsistent")                                \
    X(ERR_TOKENIZE, -12, "cannot tokenize the prompt")                                    \
    X(ERR_TOO_LONG, -13, "prompt does not fit in the KV cache or the model's context")    \
    X(ERR_CLOSED, -14, "engine is shutting down")                                         \
    X(ERR_MODEL, -15, "model forward failed")                                             \
    X(ERR_SAMPLER, -16, "sampler error")                                                  \
    X(ERR_NOT_FOUND, -17, "not found")                                                    \
    X(ERR_SYSTEM, -18, "thread or event-loop call failed")                                \
    X(ERR_CANCELLED, -19, "request cancelled")                                            \
    X(ERR_CONSTRAINT, -20, "invalid constraint")                                          \
    X(ERR_LIMIT, -21, "limit exceeded")                                                   \
    X(ERR_BYTECODE, -22, "bad bytecode (fails verification)")

typedef enum {
    ERR_OK = 0,
#define SGL_ERR_ENUM(name, value, msg) name = value,
    SGL_ERRORS(SGL_ERR_ENUM)
#undef SGL_ERR_ENUM
} ErrCode;

/* The message of a code ("ok" for 0, "unknown error" for anything else). */
const char *err_str(int code);
/* "ERR_NOMEM" etc. ("ERR_OK", "ERR_UNKNOWN"). */
const char *err_name(int code);

/* Formats a message into buf[0..cap) (truncated to fit, always
 * NUL-terminated; nothing when buf is NULL or cap is 0) and returns -1, so
 * a failing path can say `return err_fmt(err, cap, "...", ...);`. */
int err_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int err_vfmt(char *buf, size_t cap, const char *fmt, va_list ap);

#endif
