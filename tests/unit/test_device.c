/*
 * tests/unit/test_device.c — choosing the compute device (sgl_set_device,
 * runtime/device.c) and make-model's refusals, on a machine with or without
 * a GPU. The CUDA backend itself is tested on the GPU machine (tests/gpu).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "include/sgl.h"
#include "kernels/backend.h"
#include "runtime/device.h"

Test(device, cpu_and_auto_choose_a_usable_backend)
{
    char err[256] = "";
    cr_assert_eq(sgl_set_device("cpu", 0, err, sizeof err), SGL_OK, "%s", err);
    cr_assert_str_eq(sgl_device_name(), "cpu");
    ModelOptions o;
    model_options_default(&o);
    runtime_device_options(&o);
    cr_assert_eq(o.backend, K_BACKEND_CPU);
    cr_assert_eq(sgl_set_device(NULL, 0.5, err, sizeof err), SGL_OK, "%s", err);
    runtime_device_options(&o);
    cr_assert_eq(o.backend, k_backend_usable(K_BACKEND_CUDA) ? K_BACKEND_CUDA : K_BACKEND_CPU);
    cr_assert_float_eq(o.mem_fraction, 0.5, 1e-12);
    cr_assert_eq(sgl_set_device("auto", 0, err, sizeof err), SGL_OK, "%s", err);
}

Test(device, bad_choices_are_refused_by_name)
{
    char err[256] = "";
    cr_assert_eq(sgl_set_device("tpu", 0, err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "tpu"), "%s", err);
    cr_assert_eq(sgl_set_device("cpu", 1.5, err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "1.5"), "%s", err);
    if (!k_backend_usable(K_BACKEND_CUDA)) {
        cr_assert_eq(sgl_set_device("cuda", 0, err, sizeof err), SGL_ERR_USAGE);
        cr_assert(strstr(err, "cuda"), "%s", err);
    }
    /* a refused choice leaves the previous one */
    cr_assert_eq(sgl_set_device("cpu", 0, err, sizeof err), SGL_OK, "%s", err);
    cr_assert_eq(sgl_set_device("gpu", 0, err, sizeof err), SGL_ERR_USAGE);
    cr_assert_str_eq(sgl_device_name(), "cpu");
}

Test(make_model, refusals_name_the_problem)
{
    char err[256] = "";
    cr_assert_eq(sgl_make_model("llama-4-400b", "/tmp/sgl-mm-none", 0, 0, err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "llama-4-400b") && strstr(err, "llama-3-8b"), "%s", err);
    cr_assert_eq(sgl_make_model("llama-3.2-1b", "/tmp/sgl-mm-none", 0, 17, err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "16 layers"), "%s", err);
    cr_assert_eq(sgl_make_model("qwen2.5-7b", "/nonexistent/dir/x", 0, 1, err, sizeof err), SGL_ERR_IO);
    cr_assert(strstr(err, "/nonexistent/dir/x"), "%s", err);
}

Test(device, tensor_parallel_choice_reaches_the_model_options)
{
    char err[256] = "";
    ModelOptions o;
    cr_assert_eq(sgl_set_tensor_parallel(4, "nccl", err, sizeof err), SGL_OK, "%s", err);
    model_options_default(&o);
    runtime_device_options(&o);
    cr_assert_eq(o.tp, 4);
    cr_assert_eq(o.tp_comm, K_COMM_NCCL);
    cr_assert_eq(sgl_set_tensor_parallel(2, "mpi", err, sizeof err), SGL_ERR_USAGE);
    cr_assert(strstr(err, "mpi"), "%s", err);
    cr_assert_eq(sgl_set_tensor_parallel(-1, NULL, err, sizeof err), SGL_ERR_USAGE);
    cr_assert_eq(sgl_set_tensor_parallel(0, NULL, err, sizeof err), SGL_OK, "%s", err);
    runtime_device_options(&o);
    cr_assert_eq(o.tp, 0);
    cr_assert_eq(o.tp_comm, K_COMM_AUTO);
}
