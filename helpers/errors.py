"""The errors the course raises, each with a message that says what to do, and one way to raise them.

They share one base class, so a notebook can catch every set-up problem in one ``except``.
:func:`explained` is the one context manager behind ``explain_out_of_memory`` (:mod:`helpers.memory`) and
``explain_compile_failure`` (:mod:`helpers.compiling`): it turns an error deep inside torch into a short
message with what to do, and lets the failed call's tensors go.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator


class CourseError(Exception):
    """A problem with the set-up that the reader can fix: the message says how."""


class NoNetworkError(CourseError):
    """The Hugging Face Hub cannot be reached and the checkpoint is not on disk."""


class UnknownCheckpointError(CourseError):
    """The model id is neither one of the AudioLDM 2 hub checkpoints nor an existing folder."""


class NotAnAudioLDM2CheckpointError(CourseError):
    """A folder that exists but is not laid out like an AudioLDM 2 checkpoint."""


class NoGPUError(CourseError):
    """A CUDA (or MPS) device was asked for where there is none."""


class HalfPrecisionOnCPUError(CourseError):
    """float16 or bfloat16 asked for on a CPU, where it is far slower than float32 (or unsupported)."""


class DoesNotFitError(CourseError):
    """A generation did not fit in the device's memory (torch raised its ``OutOfMemoryError``)."""


class BadJobError(CourseError):
    """A job of many clips that cannot start: an unreadable or empty prompts file, a blank prompt, a bad folder."""


class CompileUnavailableError(CourseError):
    """``torch.compile`` cannot run on this machine (no compiler, unsupported GPU or platform)."""


class CompileCacheError(CourseError):
    """The compile cache's folder cannot be made or written (``AUDIOLDM2_COMPILE_CACHE``)."""


@dataclass
class Failure:
    """What :func:`explained` saw: ``happened`` stays False when the block ran through."""

    happened: bool = False
    message: str = ""
    error_type: str = ""  # the class name of the original error, e.g. "OutOfMemoryError"


@contextmanager
def explained(
    matches: Callable[[BaseException], bool],
    describe: Callable[[BaseException], str],
    course_error: type[CourseError],
    *,
    reraise: bool = True,
    clean_up: Callable[[], None] = lambda: None,
) -> Iterator[Failure]:
    """Turn an error that ``matches`` into ``describe(error)``, a message that says what to do.

    Then: the failed call's frames are cleared (``traceback.clear_frames``: their tensors can go; your own
    variables are untouched), ``clean_up()`` runs (free memory, reset a compiler), ``describe(error)`` writes
    the message, and with ``reraise=True`` ``course_error(message)`` is raised without the long original
    traceback; with ``reraise=False`` the message is printed, ``happened`` is set and the code after the
    block goes on. Any other error passes through unchanged.
    """
    failure, caught = Failure(), None
    try:
        yield failure
    except Exception as error:
        if not matches(error):
            raise
        traceback.clear_frames(error.__traceback__)
        caught = error
    if caught is None:
        return
    clean_up()
    failure.happened, failure.error_type, failure.message = True, type(caught).__name__, describe(caught)
    if reraise:
        raise course_error(failure.message) from None
    print(failure.message)


class JobBusyError(BadJobError):
    """Another run is working in the same output folder (it holds the folder's lock)."""


class NonFiniteAudioError(CourseError):
    """A generated clip holds NaN or infinite samples (a float16 overflow): it is not saved as finished."""


class QuantizationUnavailableError(CourseError):
    """A quantisation the course measures cannot run here (torchao missing, or installed with another API)."""
