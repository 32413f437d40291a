/*
 * examples/embed/embed.c — sgl inside another program, through
 * include/sgl.h alone (built against the installed library:
 *     cc embed.c $(pkg-config --cflags --libs sgl) -o embed
 * as `make test` does).
 *
 *   ./embed [MODEL.gguf]      (default: $SGL_MODEL, else the default model)
 *
 * It opens the model as a runtime, compiles a program with a gen, calls its
 * function with arguments built as values while the generated text streams
 * to stdout, reads the result's text, vars and value, then runs a function
 * that fails at run time and prints the error (file:line:col). Exit 0 when
 * both went as they should, 1 otherwise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sgl.h>

static const char program[] =
    "fn describe(city, words = 12) {\n"
    "  \"Q: Describe \" + city + \" in one sentence.\\nA:\"\n"
    "  gen(\"answer\", max_tokens: words, temperature: 0, stop: \"\\n\")\n"
    "  return {\"city\": city, \"chars\": len(state[\"answer\"])}\n"
    "}\n"
    "\n"
    "fn broken(n) {\n"
    "  let xs = [1, 2, 3]\n"
    "  return xs[n]\n"
    "}\n";

/* Streamed text as it is generated. */
static void on_event(void *ud, const sgl_event *ev)
{
    int *pieces = ud;
    if (ev->kind == SGL_EV_TEXT) {
        fwrite(ev->data, 1, ev->len, stdout);
        fflush(stdout);
        ++*pieces;
    } else {
        printf("\n[%s = %.*s]\n", ev->name, (int)ev->len, ev->data);
    }
}

int main(int argc, char **argv)
{
    sgl_runtime_options o;
    sgl_runtime_options_init(&o);
    o.model = argc > 1 ? argv[1] : NULL;
    sgl_runtime *rt = NULL;
    char err[1024];
    if (sgl_runtime_open(&o, &rt, err, sizeof err) != SGL_OK) {
        fprintf(stderr, "embed: %s\n", err);
        return 1;
    }
    sgl_vm *vm = sgl_vm_new();
    sgl_vm_set_runtime(vm, rt);
    int pieces = 0;
    sgl_vm_set_events(vm, on_event, &pieces);

    int ok = 1;
    sgl_program *prog = NULL;
    if (sgl_compile_source(vm, "example.sgl", program, strlen(program), &prog) != SGL_OK) {
        fprintf(stderr, "%s\n", sgl_last_error(vm));
        ok = 0;
        goto out;
    }

    /* a model call: describe(city: "Paris") */
    sgl_value *args = sgl_value_map();
    sgl_map_set(args, "city", sgl_value_cstring("Paris"));
    sgl_value *res = NULL;
    printf("streamed: ");
    sgl_status st = sgl_call(vm, prog, "describe", args, &res);
    sgl_value_free(args);
    if (st != SGL_OK) {
        fprintf(stderr, "embed: describe failed: %s\n", sgl_last_error(vm));
        ok = 0;
    } else {
        const char *answer = sgl_value_as_string(sgl_map_get(sgl_map_get(res, "vars"), "answer"), NULL);
        sgl_value *value = sgl_map_get(res, "value");
        printf("text:  %s\n", sgl_value_as_string(sgl_map_get(res, "text"), NULL));
        printf("value: city=%s chars=%lld\n", sgl_value_as_string(sgl_map_get(value, "city"), NULL),
               sgl_value_as_int(sgl_map_get(value, "chars")));
        if (!answer || pieces == 0) {
            fprintf(stderr, "embed: no answer streamed\n");
            ok = 0;
        }
        sgl_value_free(res);
    }

    /* a runtime error: broken(7) indexes past the end */
    sgl_value *pos = sgl_value_list();
    sgl_list_append(pos, sgl_value_int(7));
    st = sgl_call(vm, prog, "broken", pos, &res);
    sgl_value_free(pos);
    if (st == SGL_ERR_RUNTIME && strstr(sgl_last_error(vm), "example.sgl:9:")) {
        printf("runtime error, as expected:\n%s\n", sgl_last_error(vm));
    } else {
        fprintf(stderr, "embed: broken() should fail at example.sgl:9 (status %d: %s)\n", st, sgl_last_error(vm));
        sgl_value_free(res);
        ok = 0;
    }

out:
    sgl_program_free(prog);
    sgl_vm_free(vm);
    sgl_runtime_close(rt);
    return ok ? 0 : 1;
}
