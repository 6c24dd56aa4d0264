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


def test_the_memory_line_through_two_short_trials_says_how_long_a_clip_fits():
    measured = []

    def peak_gib_at(length_s: float) -> float:  # 2 GiB of weights, 50 MiB more per second of audio
        measured.append(length_s)
        return 2.0 + length_s * 50 / 1024

    line = memory.fit_memory_line(peak_gib_at, room_gib=lambda: 12.0)
    assert measured == sorted(memory.TRIAL_LENGTHS_S)  # only the two short trials ran
    assert line.base_gib == pytest.approx(2.0) and line.per_second_gib == pytest.approx(50 / 1024)
    assert line.largest_length_s() == pytest.approx(10 * 1024 / 50)
    assert line.fits(200.0) and not line.fits(210.0)
    assert "up to about 205 s fits" in str(line)


def test_a_slope_read_as_zero_falls_back_to_the_floor_and_nothing_too_long_gets_through():
    line = memory.fit_memory_line(lambda length_s: 3.0, lambda: 4.0, least_per_second_gib=0.5)
    longest_trial = max(memory.TRIAL_LENGTHS_S)
    assert line.per_second_gib == 0.5 and line.needs_gib(longest_trial) == pytest.approx(3.0)  # through the trial
    assert line.largest_length_s() == pytest.approx(longest_trial + (4.0 - 3.0) / 0.5)
    assert not line.fits(1e6)
    assert memory.fit_memory_line(lambda length_s: 9.0, lambda: 4.0).largest_length_s() == 0.0


def test_the_room_on_a_cpu_is_this_process_plus_its_share_of_what_is_free(monkeypatch):
    class Free:
        available = 8 * memory.GIB  # on Linux it counts the weights' file pages too: they can be reread

    class Resident:
        rss, shared = 3 * memory.GIB, 1 * memory.GIB  # 1 GiB of it mapped from the checkpoint's files

    class Process:
        def memory_info(self):
            return Resident()

    monkeypatch.setattr(memory.psutil, "Process", Process)
    monkeypatch.setattr(memory.psutil, "virtual_memory", lambda: Free())
    assert memory.room_for_peak_gib("cpu") == pytest.approx(memory.MEMORY_MARGIN * 10)
    assert memory.room_for_peak_gib("cpu", processes_here=2) == pytest.approx(memory.MEMORY_MARGIN * 6)
