"""helpers.compiling: the checks before torch.compile, the message after a failed one, and the recompile count.

Fast: nothing here runs Inductor; the one compile uses Dynamo alone (backend="eager") on a two-line function.
"""

import stat
import sys

import pytest
import torch

from helpers import compiling
from helpers.errors import CompileUnavailableError, CourseError


def _fake_compiler(folder, name="fake-c++"):
    """An executable that answers --version, as a compiler does."""
    path = folder / name
    path.write_text("#!/bin/sh\necho 'fake 1.0'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


# --------------------------------------------------------------------------------------------
# compile_support
# --------------------------------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="shell-script compilers")
def test_cpu_with_a_working_compiler_is_supported_and_named(tmp_path, monkeypatch):
    compiler = _fake_compiler(tmp_path)
    monkeypatch.setenv("CXX", str(compiler))
    ok, reason = compiling.compile_support("cpu")
    assert ok, reason
    assert str(compiler) in reason


@pytest.mark.skipif(sys.platform == "win32", reason="shell-script compilers")
def test_cpu_without_a_compiler_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    ok, reason = compiling.compile_support("cpu")
    assert not ok
    assert "C++ compiler" in reason and "no-such-compiler" in reason and "eager" in reason


@pytest.mark.skipif(sys.platform == "win32", reason="shell-script compilers")
def test_a_compiler_that_does_not_run_is_not_counted(tmp_path, monkeypatch):
    broken = tmp_path / "broken-c++"
    broken.write_text("#!/bin/sh\nexit 1\n")  # like macOS's stub that only offers to install Xcode
    broken.chmod(broken.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("CXX", str(broken))
    assert compiling.find_cxx_compiler() is None
    assert compiling.compile_support("cpu")[0] is False


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ok, reason = compiling.compile_support("cuda")
    assert not ok and "no CUDA GPU" in reason


@pytest.mark.parametrize("capability, supported", [((6, 1), False), ((7, 0), True), ((7, 5), True), ((9, 0), True)])
def test_cuda_capability_decides_triton(monkeypatch, tmp_path, capability, supported):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    monkeypatch.setattr(compiling.importlib.util, "find_spec", lambda name: object())  # Triton "installed"
    monkeypatch.setattr(compiling, "find_c_compiler", lambda: "/usr/bin/gcc")
    ok, reason = compiling.compile_support("cuda:0")
    assert ok is supported, reason
    assert f"{capability[0]}.{capability[1]}" in reason
    if not supported:
        assert "7.0" in reason


def test_cuda_without_triton_or_c_compiler_says_so(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    monkeypatch.setattr(compiling.importlib.util, "find_spec", lambda name: None)
    ok, reason = compiling.compile_support("cuda")
    assert not ok and "Triton is not installed" in reason

    monkeypatch.setattr(compiling.importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(compiling, "find_c_compiler", lambda: None)
    ok, reason = compiling.compile_support("cuda")
    assert not ok and "C compiler" in reason


def test_python_that_dynamo_does_not_support_is_refused_for_every_backend(monkeypatch):
    import torch._dynamo

    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    for backend in ("inductor", "eager"):
        ok, reason = compiling.compile_support("cpu", backend=backend)
        assert not ok and "Python" in reason


def test_dynamo_alone_needs_no_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    ok, reason = compiling.compile_support("cpu", backend="eager")
    assert ok and "eager" in reason


# --------------------------------------------------------------------------------------------
# explain_compile_failure
# --------------------------------------------------------------------------------------------
def _backend_failure(inner: Exception):
    from torch._dynamo.exc import BackendCompilerFailed

    def inductor():  # BackendCompilerFailed takes the backend function for its name
        pass

    return BackendCompilerFailed(inductor, inner, None)


def test_a_backend_failure_becomes_a_course_error_that_says_go_on_eager():
    with pytest.raises(CompileUnavailableError) as caught:
        with compiling.explain_compile_failure("Compiling the UNet"):
            raise _backend_failure(RuntimeError("triton says no"))
    message = str(caught.value)
    assert isinstance(caught.value, CourseError)
    assert message.startswith("Compiling the UNet failed: BackendCompilerFailed")
    assert "triton says no" in message and "eager_unet" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no long traceback under it


def test_a_missing_compiler_wrapped_in_another_error_is_recognised_and_explained():
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        try:
            raise InvalidCxxCompiler("g++")
        except InvalidCxxCompiler as inner:
            raise RuntimeError("compile step failed") from inner
    except RuntimeError as error:
        wrapped = error
    assert compiling.is_compile_failure(wrapped)
    with pytest.raises(CompileUnavailableError, match="install one"):
        with compiling.explain_compile_failure():
            raise wrapped


def test_a_gpu_too_old_for_triton_gets_its_own_advice():
    inner = RuntimeError("Found Tesla P100 which is too old to be supported by the triton GPU compiler")
    with pytest.raises(CompileUnavailableError, match="too old for Triton"):
        with compiling.explain_compile_failure():
            raise _backend_failure(inner)


def test_reraise_false_prints_and_goes_on(capsys):
    with compiling.explain_compile_failure("Compiling", reraise=False) as failure:
        raise _backend_failure(ValueError("boom"))
    assert failure.happened and failure.error_type == "BackendCompilerFailed"
    assert "Compiling failed" in capsys.readouterr().out


def test_other_errors_and_success_pass_through():
    with pytest.raises(ValueError, match="a bug in the model"):
        with compiling.explain_compile_failure():
            raise ValueError("a bug in the model")
    with pytest.raises(torch.OutOfMemoryError):
        with compiling.explain_compile_failure():
            raise torch.OutOfMemoryError("CUDA out of memory")
    with compiling.explain_compile_failure() as failure:
        pass
    assert not failure.happened and failure.message == ""


# --------------------------------------------------------------------------------------------
# Counting compilations (Dynamo alone, on a two-line function: well under a second)
# --------------------------------------------------------------------------------------------
def test_a_new_shape_recompiles_once_then_automatic_dynamic_shapes_take_over():
    import torch._dynamo

    torch._dynamo.reset()

    def scaled_sine(x):
        return torch.sin(x) * 2

    compiled = torch.compile(scaled_sine, backend="eager", fullgraph=True)
    graphs, reasons = compiling.compiled_graphs(), len(compiling.recompile_reasons())
    compiled(torch.randn(4))
    assert compiling.compiled_graphs() == graphs + 1  # the first call compiles
    compiled(torch.randn(4))
    assert compiling.compiled_graphs() == graphs + 1  # same shape: reused
    compiled(torch.randn(8))
    assert compiling.compiled_graphs() == graphs + 2  # new shape: recompiled, now with a dynamic size
    new = compiling.recompile_reasons()[reasons:]
    assert len(new) == 1 and "size mismatch" in new[0] and "expected 4, actual 8" in new[0]
    compiled(torch.randn(16))
    assert compiling.compiled_graphs() == graphs + 2  # the dynamic graph covers it
    torch._dynamo.reset()
    assert compiling.recompile_reasons() == []


def test_hitting_the_recompile_limit_under_fullgraph_is_explained():
    import torch._dynamo

    torch._dynamo.reset()
    limit = torch._dynamo.config.recompile_limit
    # torch's own patch, not monkeypatch: undoing a monkeypatch on a config module deletes the setting (hides it).
    # automatic_dynamic_shapes off: every new size, a new graph.
    with torch._dynamo.config.patch(recompile_limit=1, automatic_dynamic_shapes=False):
        compiled = torch.compile(lambda x: torch.cos(x) + 1, backend="eager", fullgraph=True)
        compiled(torch.randn(3))
        try:
            with pytest.raises(CompileUnavailableError, match="dynamic=True"):
                with compiling.explain_compile_failure("Compiling the UNet"):
                    compiled(torch.randn(5))  # a second graph, past the limit of 1
        finally:
            torch._dynamo.reset()
    assert torch._dynamo.config.recompile_limit == limit  # and the setting is there again, as it was


# --------------------------------------------------------------------------------------------
# CompiledOrEager: a compile that fails at the first call goes on eager, with one line
# --------------------------------------------------------------------------------------------
def test_compiled_or_eager_goes_on_eager_after_a_compile_failure_and_keeps_the_modules_attributes(capsys):
    def broken_backend(graph, inputs):
        raise RuntimeError("no kernels for this device")

    eager = torch.nn.Linear(3, 2)
    eager.config = {"sampling_rate": 16000}  # like the vocoder's config, read by the pipeline
    wrapped = compiling.CompiledOrEager(eager, "Compiling the test module", backend=broken_backend)
    x = torch.randn(4, 3)
    torch.testing.assert_close(wrapped(x), eager(x))
    assert "no kernels for this device" in wrapped.failed
    assert capsys.readouterr().out.splitlines() == [
        f"Compiling the test module: compiling failed ({wrapped.failed}); going on with the eager model."]
    torch.testing.assert_close(wrapped(x), eager(x))  # from now on the eager module, without a word
    assert capsys.readouterr().out == ""
    assert wrapped.config == {"sampling_rate": 16000} and wrapped.weight is eager.weight


def test_compiled_or_eager_lets_other_errors_through():
    wrapped = compiling.CompiledOrEager(torch.nn.Linear(3, 2), "Compiling", backend="eager")
    with pytest.raises(RuntimeError, match="mat1 and mat2"):  # a wrong input is the caller's bug, not a compile's
        wrapped(torch.randn(4, 5))
    assert wrapped.failed == ""
    torch._dynamo.reset()


def test_compiled_or_eager_in_cuda_graphs_hands_out_a_copy_of_the_graphs_output(monkeypatch):
    """A CUDA graph's next replay overwrites its output: with mode="reduce-overhead" the caller gets a copy."""
    kept = []

    def fake_compile(module, **options):  # stands in for a graph whose output tensor is its own, reused
        kept.append(options)
        out = torch.zeros(2)
        return lambda x: out.copy_(x)

    monkeypatch.setattr(torch, "compile", fake_compile)
    graphed = compiling.CompiledOrEager(torch.nn.Identity(), "Compiling", fullgraph=True, mode="reduce-overhead")
    first = graphed(torch.ones(2))
    graphed(torch.full((2,), 7.0))  # the next replay
    assert first.tolist() == [1.0, 1.0] and kept == [{"fullgraph": True, "mode": "reduce-overhead"}]
    plain = compiling.CompiledOrEager(torch.nn.Identity(), "Compiling", fullgraph=True)
    first = plain(torch.ones(2))
    plain(torch.full((2,), 7.0))
    assert first.tolist() == [7.0, 7.0]  # default mode: the output as the compiled module gave it
