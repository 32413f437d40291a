/*
 * base/role.c — names of the chat roles (see role.h).
 */
#include "base/role.h"

#include <string.h>

static const char *const role_names[ROLE_COUNT] = {
#define SGL_ROLE_NAME(e, name) name,
    SGL_ROLES(SGL_ROLE_NAME)
#undef SGL_ROLE_NAME
};

const char *role_name(Role r)
{
    return (unsigned)r < ROLE_COUNT ? role_names[r] : NULL;
}

int role_from_name(const char *s, size_t n)
{
    for (int i = 0; i < ROLE_COUNT; i++)
        if (strlen(role_names[i]) == n && !memcmp(role_names[i], s, n)) return i;
    return -1;
}
