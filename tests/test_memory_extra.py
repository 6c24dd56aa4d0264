"""explain_out_of_memory: an out-of-memory error becomes advice, and the failed call's memory is freed."""

import gc
import weakref

import pytest
import torch

from helpers import errors, memory
from helpers.memory import OUT_OF_MEMORY_ADVICE, explain_out_of_memory

CUDA_MESSAGE = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 14.75 GiB"


def _fail(message: str = CUDA_MESSAGE):
    raise torch.OutOfMemoryError(message)


def test_a_torch_out_of_memory_error_becomes_the_course_error_with_advice():
    with pytest.raises(errors.DoesNotFitError) as caught:
        with explain_out_of_memory("cpu", what="4 clips of 150 s"):
            _fail()
    message = str(caught.value)
    assert isinstance(caught.value, errors.CourseError)
    assert message.startswith("4 clips of 150 s ran out of host memory on cpu (CUDA out of memory. Tried to allocate")
    for advice in ("audio_length_in_s", "num_waveforms_per_prompt", "torch.float16", "enable_model_cpu_offload",
                   "bigger GPU"):
        assert advice in message, advice
    assert caught.value.__suppress_context__  # shown without the original traceback
    assert not issubclass(errors.DoesNotFitError, torch.OutOfMemoryError)  # a name of its own, not torch's


def test_torch_cuda_out_of_memory_error_is_the_same_class():
    assert torch.cuda.OutOfMemoryError is torch.OutOfMemoryError
    with pytest.raises(errors.DoesNotFitError):
        with explain_out_of_memory("cpu"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")


def test_without_reraise_it_prints_the_advice_and_goes_on(capsys):
    with explain_out_of_memory("cpu", what="This generation", reraise=False) as oom:
        _fail()
    assert oom.happened and OUT_OF_MEMORY_ADVICE in oom.message
    assert capsys.readouterr().out.strip() == oom.message


def test_a_block_that_fits_runs_to_its_end_and_reports_nothing(capsys):
    ran = []
    with explain_out_of_memory("cpu", reraise=False) as oom:
        ran.append("first")
        ran.append("last")
    assert ran == ["first", "last"] and not oom.happened and oom.message == ""
    assert capsys.readouterr().out == ""


def test_other_errors_pass_through_unchanged():
    with pytest.raises(ValueError, match="not memory"):
        with explain_out_of_memory("cpu", reraise=False):
            raise ValueError("not memory")
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with explain_out_of_memory("cpu"):
            raise RuntimeError("shape mismatch")


def test_a_real_cpu_allocator_failure_is_caught():
    with explain_out_of_memory("cpu", reraise=False) as oom:
        torch.empty(2**52, dtype=torch.uint8)  # 4 PiB: more than any address space
    assert oom.happened and "can't allocate memory" in oom.message


def test_the_failed_calls_tensors_are_released():
    refs = []

    def generation():
        activations = torch.ones(1024, 1024)  # what a failed pipeline call would still hold
        refs.append(weakref.ref(activations))
        _fail()

    with pytest.raises(errors.DoesNotFitError) as caught:
        with explain_out_of_memory("cpu"):
            generation()
    gc.collect()
    assert caught.value.__context__ is not None  # the original error is still reachable...
    assert refs[0]() is None  # ...but the tensors its frames held are gone


def test_on_a_mac_peak_memory_reads_the_metal_counters_not_the_process_rss(monkeypatch):
    # MPS tensors live in Metal buffers that RSS does not count; torch.mps has counters but no peak.
    counters = {"allocated": 1 * memory.GIB, "driver": 2 * memory.GIB}
    calls = []
    monkeypatch.setattr(torch.mps, "synchronize", lambda: calls.append("synchronize"))
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: calls.append("empty_cache"))
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: counters["allocated"])
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: counters["driver"])
    with memory.peak_memory("mps") as peak:
        counters.update(allocated=3 * memory.GIB, driver=5 * memory.GIB)  # the generation's working set
    assert (peak.gpu_allocated, peak.gpu_reserved, peak.host_rss) == (3 * memory.GIB, 5 * memory.GIB, None)
    assert peak.peak_gib == 5.0
    assert str(peak) == "peak GPU memory 3.00 GiB allocated, 5.00 GiB held by the Metal driver [mps]"
    assert calls[:2] == ["synchronize", "empty_cache"] and calls[-1] == "synchronize"
