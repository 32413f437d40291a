/*
 * base/role.h — the chat roles: the one enum that the parser (role blocks),
 * the VM (a prompt state's role segments) and the runtime (chat requests)
 * share. Declared once; names come from the same list.
 */
#ifndef SGL_BASE_ROLE_H
#define SGL_BASE_ROLE_H

#include <stddef.h>

/* X(enum name, language keyword / OpenAI role name) */
#define SGL_ROLES(X)               \
    X(ROLE_SYSTEM, "system")       \
    X(ROLE_USER, "user")           \
    X(ROLE_ASSISTANT, "assistant")

typedef enum {
#define SGL_ROLE_ENUM(e, name) e,
    SGL_ROLES(SGL_ROLE_ENUM)
#undef SGL_ROLE_ENUM
    ROLE_COUNT
} Role;

/* "system", "user", "assistant"; NULL for a value out of range. */
const char *role_name(Role r);
/* The role named s[0..n), or -1. */
int role_from_name(const char *s, size_t n);

#endif
