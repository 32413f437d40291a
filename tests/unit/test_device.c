/*
 * tests/unit/test_device.c — choosing the compute device (sgl_set_device,
 * runtime/device.c) and make-model's refusals, on a machine with or without
 * a GPU, and the dev-ref backend's check of upload_async's contract. The
 * CUDA backend itself is tested on the GPU machine (tests/gpu).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "include/sgl.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
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

/* dev-ref checks upload_async's contract (kernels/backend.h): the host
 * source stays untouched until an event recorded after the upload has been
 * waited, or a sync; touching it earlier fails the backend by name. */
Test(devref, upload_async_source_must_wait_for_its_event)
{
    char err[256] = "";
    KBackend *be = cpu_devref_backend_new(err, sizeof err);
    cr_assert(be, "%s", err);
    const KDevOps *op = be->dev;
    int32_t *src = op->host_alloc(be->ctx, 64), *dst = be->buf_alloc(be->ctx, 64), back[16];
    void *ev[2] = {op->event_new(be->ctx), op->event_new(be->ctx)};
    for (int i = 0; i < 16; i++) src[i] = i;
    /* the right use: upload, record, wait, then reuse */
    op->upload_async(be->ctx, dst, src, 64);
    op->event_record(be->ctx, ev[0]);
    cr_assert_eq(op->event_wait(be->ctx, ev[0]), 0);
    src[0] = 100;
    op->upload_async(be->ctx, dst, src, 64);
    be->download(be->ctx, back, dst, 64);
    cr_assert_eq(back[0], 100);
    cr_assert_null(be->error(be->ctx));
    /* waiting an older event does not cover a later upload */
    op->event_record(be->ctx, ev[0]);
    op->upload_async(be->ctx, dst, src, 64);
    op->event_record(be->ctx, ev[1]);
    cr_assert_eq(op->event_wait(be->ctx, ev[0]), 0);
    src[1] = 7; /* too early: ev[1] covers it */
    cr_assert_eq(op->event_wait(be->ctx, ev[1]), -1);
    const char *e = be->error(be->ctx);
    cr_assert(e && strstr(e, "upload_async"), "%s", e ? e : "(none)");
    /* a sync covers everything; host_free forgets what was pending */
    op->upload_async(be->ctx, dst, src, 64);
    cr_assert_eq(be->sync(be->ctx), 0);
    src[2] = 9;
    op->upload_async(be->ctx, dst, src, 64);
    op->host_free(be->ctx, src);
    cr_assert_eq(be->sync(be->ctx), 0);
    op->event_free(be->ctx, ev[0]);
    op->event_free(be->ctx, ev[1]);
    be->buf_free(be->ctx, dst);
    be->destroy(be->ctx);
}

/* KDevOps.matmul_swiglu on dev-ref: the same bits as its matmul into a
 * [n][2ff] scratch then its swiglu, for n = 1..4, x rows inside a wider
 * buffer; act is poisoned first, so an unwritten value fails. */
Test(devref, matmul_swiglu_is_matmul_then_swiglu)
{
    char err[256] = "";
    KBackend *be = cpu_devref_backend_new(err, sizeof err);
    cr_assert(be, "%s", err);
    const KDevOps *op = be->dev;
    cr_assert_not_null(op->matmul_swiglu);
    enum { IN = 576, FF = 200, LDX = IN + 24, NMAX = 4 };
    uint16_t *w = be->buf_alloc(be->ctx, (size_t)2 * FF * IN * 2), *x = be->buf_alloc(be->ctx, (size_t)NMAX * LDX * 2);
    uint16_t *gu = be->buf_alloc(be->ctx, (size_t)NMAX * 2 * FF * 2), *act = be->buf_alloc(be->ctx, NMAX * FF * 2);
    uint16_t *want = be->buf_alloc(be->ctx, NMAX * FF * 2);
    uint32_t s = 12345;
    for (size_t i = 0; i < (size_t)2 * FF * IN; i++) {
        s = s * 1664525u + 1013904223u;
        w[i] = k_f32_to_bf16(((float)(s >> 8) / 16777216.0f - 0.5f) * 0.2f);
    }
    for (size_t i = 0; i < (size_t)NMAX * LDX; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = k_f32_to_bf16(((float)(s >> 8) / 16777216.0f - 0.5f) * 4.0f);
    }
    KTensor kw = {.dtype = K_DTYPE_BF16, .ne = {IN, 2 * FF, 1, 1}, .data = w};
    for (int n = 1; n <= NMAX; n++) {
        op->matmul(be->ctx, &kw, NULL, x, LDX, n, gu, 2 * FF);
        op->swiglu(be->ctx, gu, n, FF, want);
        memset(act, 0xff, (size_t)n * FF * 2);
        memset(gu, 0, (size_t)n * 2 * FF * 2);
        op->matmul_swiglu(be->ctx, &kw, x, LDX, n, FF, gu, act);
        cr_assert_eq(memcmp(act, want, (size_t)n * FF * 2), 0, "n=%d: fused != matmul then swiglu", n);
        int nonzero = 0;
        for (int i = 0; i < n * FF; i++) nonzero += (want[i] & 0x7fff) != 0;
        cr_assert_gt(nonzero, n * FF / 2, "n=%d: the activations are mostly zero", n);
    }
    cr_assert_null(be->error(be->ctx));
    be->buf_free(be->ctx, w), be->buf_free(be->ctx, x), be->buf_free(be->ctx, gu);
    be->buf_free(be->ctx, act), be->buf_free(be->ctx, want);
    be->destroy(be->ctx);
}
