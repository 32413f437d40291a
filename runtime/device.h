/*
 * runtime/device.h — where opened models compute: the process-wide choice
 * that include/sgl.h's sgl_set_device makes (`--device`, `--mem-fraction`),
 * read by runtime/runtime.c when it opens a model.
 *
 * Owns: the chosen kind (CPU, CUDA, or auto: CUDA when usable) and the
 * memory fraction. Threads: set before runtimes open (the CLI's main
 * thread); read under a mutex.
 */
#ifndef SGL_RUNTIME_DEVICE_H
#define SGL_RUNTIME_DEVICE_H

#include "runtime/model.h"

/* Fills o->backend, o->mem_fraction, o->tp, o->tp_comm, o->quantization
 * and o->kv_cache_dtype from the current choice (sgl_set_device,
 * sgl_set_tensor_parallel, sgl_set_quantization). */
void runtime_device_options(ModelOptions *o);

#endif
