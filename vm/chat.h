/*
 * vm/chat.h — chat templates for role blocks (§7): which template is in
 * effect, loading it from stdlib/chat/, and asking it for the markers.
 *
 * Owns: per VM, the configured template name and stdlib directory, the
 * compiled template module (stdlib/chat/NAME.sgl) and, when the name comes
 * from the model, the compiled detector (stdlib/chat/detect.sgl); both are
 * instantiated once (vm_aux_new) and kept until the configuration or the
 * backend changes. Does not own: the role segments (vm/prompt.c), running SGL
 * code (vm/run.c: vm_call_now), the templates themselves (stdlib/chat/, README.md
 * there describes their interface).
 *
 * Which template: the name set by the embedder (sgl_vm_set_chat_template,
 * `--chat-template`), else, with a backend attached that reports the model's
 * Jinja template, detect(jinja) from stdlib/chat/detect.sgl; with neither
 * (or when detect returns nil) role blocks add no markers. The choice is
 * made at the first role block a program opens, not before: programs
 * without role blocks never ask the backend (which may load a model to
 * answer).
 *
 * What a role block gets, on the fiber's own state (so templates that read
 * state.text see the turns before, with their markers):
 *
 *   [bos]  role_begin(role)  ⟨segment: the block's content⟩  role_end(role)
 *
 * bos is written only when the block opens on an empty state: BOS belongs
 * at the very start of the prompt, so a conversation that starts after
 * other text, and every fork branch (which copies its parent's text), gets
 * none. role_begin/role_end are called each time (llama2, mistral and qwen
 * depend on what came before), and must return a string (or nil: nothing).
 * Inside `assistant`, gen stops at end_of_turn by default (vm/gen.c).
 */
#ifndef SGL_VM_CHAT_H
#define SGL_VM_CHAT_H

#include "vm/vm.h"

typedef struct Chat Chat;

/* The role hooks (vm_set_role_hooks) over a Chat given as their ud. */
extern const VmRoleHooks chat_role_hooks;

Chat *chat_new(void);
/* Frees the loaded template (its module's values are left to the collector). */
void chat_free(struct VM *vm, Chat *c);

/* name: a module of stdlib/chat/ or NULL (from the model). A change of
 * either argument drops what was loaded. 0, or -1 on no memory. */
int chat_configure(struct VM *vm, Chat *c, const char *name, const char *stdlib_dir);
/* Drops what was loaded (the backend changed). */
void chat_reset(struct VM *vm, Chat *c);

/* Appends the markers that open (close) a role block of `role` (Role) to
 * st. 0, or -1 with the error raised (vm_raise or, for an error inside the
 * template's SGL code, its full message). */
int chat_open(struct VM *vm, Chat *c, ObjState *st, int role);
int chat_close(struct VM *vm, Chat *c, ObjState *st, int role);

/* The end-of-turn marker of the template in effect, or NULL (none, or not
 * chosen yet: no role block has been opened). */
const char *chat_end_of_turn(const Chat *c);

#endif
