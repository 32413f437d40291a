"""sgl: SGL programs from Python, over libsgl.so through ctypes.

    import sgl
    rt = sgl.Runtime()                        # the default model (or model="path.gguf")
    prog = rt.compile('fn main(q) { q gen("a", max_tokens: 8) }')
    res = prog.run(q="The sky is")            # res.text, res.vars, res.value
    for piece in prog.stream(q="Once"):      # generated text as it comes
        print(piece.text, end="")

A pure-Python package: no compiled extension. The library is found through
the SGL_LIBRARY environment variable (a path to libsgl.so), else the
installed prefix (the lib/ directory next to this interpreter's prefix,
/usr/local/lib, /usr/lib, then the loader's own search), else a build/
directory above this file (a source checkout).

Arguments and results cross as JSON (include/sgl.h's sgl_run): values JSON
cannot hold come back as their str() text. Errors raise CompileError,
SglRuntimeError or UsageError, each with .file, .line, .col (None when the
message has no position) and the library's whole message as str(e).

Threads: a Runtime and its programs belong to the thread that made them.
"""

import ctypes
import ctypes.util
import json
import os
import re
import sys

__all__ = [
    "Runtime", "Program", "Result", "Event", "Stream",
    "Error", "CompileError", "SglRuntimeError", "UsageError", "IOError_", "library_path",
]

__version__ = "0.1.0"

# ---- errors -----------------------------------------------------------------

_POS = re.compile(r"^(?P<file>[^\n:]+):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.*)", re.S)


class Error(Exception):
    """An sgl error: str(e) is the library's message ("file:line:col: error: ...")."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message
        m = _POS.match(message or "")
        self.file = m.group("file") if m else None
        self.line = int(m.group("line")) if m else None
        self.col = int(m.group("col")) if m else None


class CompileError(Error):
    """A syntax or compile error (SGL_ERR_COMPILE)."""


class SglRuntimeError(Error):
    """A runtime error of the program (SGL_ERR_RUNTIME)."""


class UsageError(Error):
    """A bad call: no such function, an argument the function does not take (SGL_ERR_USAGE)."""


class IOError_(Error):
    """A file, model or bytecode that cannot be read (SGL_ERR_IO)."""


_ERRORS = {1: CompileError, 2: SglRuntimeError, 3: IOError_, 4: UsageError}

# ---- the library ---------------------------------------------------------------


def library_path():
    """Where libsgl.so is taken from (see the module's documentation)."""
    env = os.environ.get("SGL_LIBRARY")
    if env:
        return env
    cands = [os.path.join(sys.prefix, "lib", "libsgl.so"), "/usr/local/lib/libsgl.so", "/usr/lib/libsgl.so"]
    for c in cands:
        if os.path.exists(c):
            return c
    found = ctypes.util.find_library("sgl")
    if found:
        return found
    here = os.path.dirname(os.path.abspath(__file__))
    for up in range(1, 5):
        c = os.path.join(here, *([".."] * up), "build", "libsgl.so")
        if os.path.exists(c):
            return os.path.normpath(c)
    raise OSError("libsgl.so not found: set SGL_LIBRARY to its path, or `make install` it")


class _Options(ctypes.Structure):
    # include/sgl.h's sgl_runtime_options, field for field
    _fields_ = [
        ("model", ctypes.c_char_p),
        ("threads", ctypes.c_int),
        ("kv_tokens", ctypes.c_int),
        ("chunk_size", ctypes.c_int),
        ("itl_target_ms", ctypes.c_double),
        ("max_running", ctypes.c_int),
        ("prefix_cache", ctypes.c_int),
        ("blas_prefill", ctypes.c_int),
        ("has_seed", ctypes.c_int),
        ("seed", ctypes.c_ulonglong),
        ("chat_template", ctypes.c_char_p),
        ("uv_loop", ctypes.c_void_p),
        ("lazy", ctypes.c_int),
        ("disable_overlap", ctypes.c_int),
    ]


class _Event(ctypes.Structure):
    # include/sgl.h's sgl_event
    _fields_ = [
        ("kind", ctypes.c_int),
        ("task", ctypes.c_void_p),
        ("branch", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("data", ctypes.POINTER(ctypes.c_char)),
        ("len", ctypes.c_size_t),
    ]


_EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_Event))

_lib = None


def _load():
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(library_path())
    P, I, S, C = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p
    PP = ctypes.POINTER(ctypes.c_void_p)
    sigs = {
        "sgl_vm_new": (P, []),
        "sgl_vm_free": (None, [P]),
        "sgl_last_error": (C, [P]),
        "sgl_free": (None, [P]),
        "sgl_compile_source": (I, [P, C, C, S, PP]),
        "sgl_compile_file": (I, [P, C, PP]),
        "sgl_program_load": (I, [P, C, PP]),
        "sgl_program_save": (I, [P, P, C]),
        "sgl_program_free": (None, [P]),
        "sgl_program_signature_json": (P, [P]),
        "sgl_run": (I, [P, P, C, C, PP]),
        "sgl_run_batch": (I, [P, P, C, ctypes.POINTER(C), I, PP]),
        "sgl_runtime_options_init": (None, [ctypes.POINTER(_Options)]),
        "sgl_runtime_open": (I, [ctypes.POINTER(_Options), PP, ctypes.c_char_p, S]),
        "sgl_runtime_close": (None, [P]),
        "sgl_runtime_model_path": (C, [P]),
        "sgl_vm_set_runtime": (None, [P, P]),
        "sgl_vm_set_events": (None, [P, _EVENT_FN, P]),
        "sgl_task_start": (I, [P, P, C, C, P, P, PP]),
        "sgl_task_finished": (I, [P]),
        "sgl_task_result": (I, [P, PP]),
        "sgl_task_error": (C, [P]),
        "sgl_task_cancel": (None, [P]),
        "sgl_task_free": (None, [P]),
        "sgl_vm_run_ready": (I, [P]),
        "sgl_runtime_wait": (I, [P]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    _lib = lib
    return lib


def _take_string(ptr):
    """A malloc'd char * from the library, as str; freed."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        _lib.sgl_free(ptr)


def _enc(s):
    return None if s is None else s.encode("utf-8")


# ---- results and events -----------------------------------------------------------


class Result:
    """One run's outcome: the final prompt state's text, its vars, the function's value."""

    __slots__ = ("text", "vars", "value")

    def __init__(self, obj):
        self.text = obj.get("text", "")
        self.vars = obj.get("vars", {})
        self.value = obj.get("value")

    def __repr__(self):
        return "Result(text=%r, vars=%r, value=%r)" % (self.text, self.vars, self.value)


class Event:
    """A streamed event: kind "text" (generated text; .name the gen's variable
    or None) or "var" (a captured variable; .value its value); .branch 0 for
    the program, 1, 2, ... for fork branches in creation order."""

    __slots__ = ("kind", "name", "text", "value", "branch")

    def __init__(self, ev):
        raw = ctypes.string_at(ev.data, ev.len) if ev.len else b""
        self.kind = "text" if ev.kind == 1 else "var"
        self.name = ev.name.decode("utf-8") if ev.name else None
        self.branch = ev.branch
        self.text = raw.decode("utf-8", "replace") if self.kind == "text" else None
        self.value = json.loads(raw.decode("utf-8")) if self.kind == "var" else None

    def __repr__(self):
        if self.kind == "text":
            return "Event(text, %r, %r, branch=%d)" % (self.name, self.text, self.branch)
        return "Event(var, %r, %r, branch=%d)" % (self.name, self.value, self.branch)


def _status(lib, vm, st):
    if st != 0:
        raise _ERRORS.get(st, Error)(lib.sgl_last_error(vm).decode("utf-8", "replace"))


# ---- runtime and programs -------------------------------------------------------------


class Runtime:
    """A model opened for serving (its engine, prefix cache and KV pool), and a
    VM on it that this runtime's programs run on.

    model: a GGUF file or Hugging Face directory; None: $SGL_MODEL, else the
    default model. lazy=True loads it at the first gen (a program that never
    calls the model then needs none). threads, kv_tokens, chunk_size,
    max_running, seed, chat_template as sgl_runtime_options."""

    def __init__(self, model=None, *, lazy=False, threads=0, kv_tokens=0, chunk_size=0, max_running=0,
                 seed=None, chat_template=None):
        lib = _load()
        self._lib = lib
        o = _Options()
        lib.sgl_runtime_options_init(ctypes.byref(o))
        self._keep = [_enc(model), _enc(chat_template)]
        o.model = self._keep[0]
        o.chat_template = self._keep[1]
        o.threads, o.kv_tokens, o.chunk_size, o.max_running = threads, kv_tokens, chunk_size, max_running
        if seed is not None:
            o.has_seed, o.seed = 1, seed
        o.lazy = 1 if lazy else 0
        err = ctypes.create_string_buffer(2048)
        rt = ctypes.c_void_p()
        st = lib.sgl_runtime_open(ctypes.byref(o), ctypes.byref(rt), err, len(err))
        if st != 0:
            raise IOError_(err.value.decode("utf-8", "replace"))
        self._rt = rt
        self._vm = lib.sgl_vm_new()
        if not self._vm:
            lib.sgl_runtime_close(rt)
            raise MemoryError("sgl_vm_new")
        lib.sgl_vm_set_runtime(self._vm, rt)
        self._sink = None      # where events go now (a list or a callable)
        self._cb = _EVENT_FN(self._on_event)
        lib.sgl_vm_set_events(self._vm, self._cb, None)
        self._programs = []

    @property
    def model_path(self):
        return self._lib.sgl_runtime_model_path(self._rt).decode("utf-8")

    def _on_event(self, ud, ev):
        sink = self._sink
        if sink is None:
            return
        e = Event(ev.contents)
        if callable(sink):
            sink(e)
        else:
            sink.append(e)

    def compile(self, source, name="<python>"):
        """A Program from SGL source text (CompileError on a syntax or compile error)."""
        data = source.encode("utf-8")
        p = ctypes.c_void_p()
        st = self._lib.sgl_compile_source(self._vm, _enc(name), data, len(data), ctypes.byref(p))
        _status(self._lib, self._vm, st)
        return self._adopt(p)

    def load(self, path):
        """A Program from a .sgl source file or a .sglc bytecode file."""
        p = ctypes.c_void_p()
        path = os.fspath(path)
        if path.endswith(".sglc"):
            st = self._lib.sgl_program_load(self._vm, _enc(path), ctypes.byref(p))
        else:
            st = self._lib.sgl_compile_file(self._vm, _enc(path), ctypes.byref(p))
        _status(self._lib, self._vm, st)
        return self._adopt(p)

    def _adopt(self, p):
        prog = Program(self, p)
        self._programs.append(prog)
        return prog

    def close(self):
        """Frees the programs, the VM and the runtime (also at exit of a `with`)."""
        if self._rt is None:
            return
        for p in self._programs:
            p._free()
        self._programs = []
        self._lib.sgl_vm_free(self._vm)
        self._lib.sgl_runtime_close(self._rt)
        self._rt = self._vm = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Stream:
    """Iterating yields the run's Events as they come (text while a gen
    runs); afterwards .result holds the Result (or the iteration raised the
    run's error). Leaving it early cancels the run (its gens are cancelled
    in the engine)."""

    def __init__(self, prog, fn, args_json):
        self._prog = prog
        self._fn = fn
        self._args = args_json
        self.result = None

    def __iter__(self):
        prog = self._prog
        rt = prog._rt
        lib = rt._lib
        vm = rt._vm
        queue = []
        task = ctypes.c_void_p()
        st = lib.sgl_task_start(vm, prog._p, _enc(self._fn), _enc(self._args), None, None, ctypes.byref(task))
        _status(lib, vm, st)
        done = False
        rt._sink = queue
        try:
            while True:
                waiting = lib.sgl_vm_run_ready(vm)
                while queue:
                    yield queue.pop(0)
                if lib.sgl_task_finished(task):
                    break
                if waiting > 0 and lib.sgl_runtime_wait(rt._rt) < 0:
                    lib.sgl_vm_run_ready(vm)
                    break
                while queue:
                    yield queue.pop(0)
            # what is still in flight of this run (nothing, normally) is delivered
            while lib.sgl_vm_run_ready(vm) > 0 and lib.sgl_runtime_wait(rt._rt) == 0:
                pass
            while queue:
                yield queue.pop(0)
            out = ctypes.c_void_p()
            st = lib.sgl_task_result(task, ctypes.byref(out))
            if st != 0:
                raise _ERRORS.get(st, Error)(lib.sgl_task_error(task).decode("utf-8", "replace"))
            self.result = Result(json.loads(_take_string(out.value)))
            done = True
        finally:
            rt._sink = None
            if not done and not lib.sgl_task_finished(task):
                lib.sgl_task_cancel(task)
                while lib.sgl_vm_run_ready(vm) > 0 and lib.sgl_runtime_wait(rt._rt) == 0:
                    pass
            lib.sgl_task_free(task)


class Program:
    """A compiled program (its imports included) on its Runtime."""

    def __init__(self, rt, p):
        self._rt = rt
        self._p = p

    def _free(self):
        if self._p:
            self._rt._lib.sgl_program_free(self._p)
            self._p = None

    def call(self, fn=None, args=None, on_event=None):
        """Runs function fn (None: main, or the top level) with args (a dict
        by parameter name); on_event(Event) sees the streamed events."""
        lib, vm = self._rt._lib, self._rt._vm
        out = ctypes.c_void_p()
        self._rt._sink = on_event
        try:
            st = lib.sgl_run(vm, self._p, _enc(fn), _enc(json.dumps(args or {})), ctypes.byref(out))
        finally:
            self._rt._sink = None
        _status(lib, vm, st)
        return Result(json.loads(_take_string(out.value)))

    def run(self, **args):
        """main(**args): a Result with .text, .vars and .value."""
        return self.call(None, args)

    def run_batch(self, arg_list, fn=None):
        """One instance per dict of arguments, all at once (batched in the
        engine): a list of Results, or for an instance that failed its
        SglRuntimeError (or UsageError) object, in input order."""
        lib, vm = self._rt._lib, self._rt._vm
        n = len(arg_list)
        texts = [json.dumps(a).encode("utf-8") for a in arg_list]
        arr = (ctypes.c_char_p * max(n, 1))(*texts)
        outs = (ctypes.c_void_p * max(n, 1))()
        st = lib.sgl_run_batch(vm, self._p, _enc(fn), arr, n, outs)
        _status(lib, vm, st)
        results = []
        for i in range(n):
            obj = json.loads(_take_string(outs[i]) or '{"error": "no result"}')
            if "error" in obj and set(obj) == {"error"}:
                msg = obj["error"]
                results.append(SglRuntimeError(msg) if _POS.match(msg) else UsageError(msg))
            else:
                results.append(Result(obj))
        return results

    def stream(self, fn=None, **args):
        """A Stream over fn(**args) (None: main): iterate it for Events."""
        return Stream(self, fn, json.dumps(args))

    def signature(self):
        """{"functions": [{"name": ..., "params": [{"name": ..., "default": ...}]}]}"""
        return json.loads(_take_string(self._rt._lib.sgl_program_signature_json(self._p)))

    def save(self, path):
        """Writes the program as a .sglc bytecode file."""
        lib, vm = self._rt._lib, self._rt._vm
        _status(lib, vm, lib.sgl_program_save(vm, self._p, _enc(os.fspath(path))))
