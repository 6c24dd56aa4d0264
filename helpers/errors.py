"""The errors the course raises, each with a message that says what to do.

They share one base class, so a notebook can catch every set-up problem in one ``except``.
"""


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


class OutOfMemoryError(CourseError):
    """A generation did not fit in the device's memory."""


class CompileUnavailableError(CourseError):
    """``torch.compile`` cannot run on this machine (no compiler, unsupported GPU or platform)."""
