"""Fewer bits per weight: the UNet's linear layers in int8 (notebook 10).

Less memory to read per step, and on some devices faster arithmetic. Two ways, one per kind of device:

* on a CPU, PyTorch alone: ``torch.ao.quantization.quantize_dynamic`` stores the linear layers' weights in int8
  and quantises each activation on the fly (float32 layers only; the convolutions stay float32);
* on a GPU, the ``torchao`` package (not one of the course's packages: ``pip install torchao``):
  ``quantize_(model, Int8WeightOnlyConfig())``. The function-style ``int8_weight_only()`` of older tutorials was
  removed in torchao 0.15. The config's ``set_inductor_config=True`` default changes Inductor's global settings
  for every later ``torch.compile`` in the process, so we pass False.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from importlib import metadata

import torch

from helpers.errors import QuantizationUnavailableError


def dynamic_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of float32 ``model`` whose ``nn.Linear`` layers run in dynamic int8 (CPU)."""
    with warnings.catch_warnings():  # torch.ao.quantization says it will move to torchao
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def torchao_int8_weight_only(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose linear layers keep int8 weights, with torchao's ``Int8WeightOnlyConfig``.

    Raises :class:`~helpers.errors.QuantizationUnavailableError`, in one line, when torchao is not installed, and
    when it is installed but does not offer that API (or does not import with this torch).
    """
    if importlib.util.find_spec("torchao") is None:
        raise QuantizationUnavailableError(
            "torchao is not installed (it is not one of the course's packages): pip install torchao to measure "
            "int8 weights here.")
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        config = Int8WeightOnlyConfig(set_inductor_config=False)  # True would retune every later compile
    except Exception as error:  # an ImportError, or a TypeError from a config that changed its arguments
        raise QuantizationUnavailableError(
            f"torchao {metadata.version('torchao')} is installed but does not offer the API this course uses "
            "(torchao.quantization.quantize_ with Int8WeightOnlyConfig(set_inductor_config=...), torchao 0.15 and "
            f"later): {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None
    quantized = copy.deepcopy(model)  # quantize_ changes a model in place: keep the float one to go back to
    quantize_(quantized, config)
    return quantized


def int8_method(device: torch.device | str, dtype: torch.dtype) -> tuple[str, str]:
    """Which int8 quantisation notebook 10 applies to a UNet in ``dtype`` on ``device``, and why, in one line.

    ``"dynamic"`` (:func:`dynamic_int8`) for float32 layers on a CPU: PyTorch's own, nothing to install; it refuses
    bfloat16 activations ("expected scalar type Float"). ``"torchao"`` (:func:`torchao_int8_weight_only`) everywhere
    else: a GPU, and a CPU whose last rung is bfloat16.
    """
    kind = torch.device(device).type
    if kind == "cpu" and dtype == torch.float32:
        return "dynamic", "PyTorch's dynamic int8 on the float32 linear layers (a CPU; the convolutions stay float32)"
    name = str(dtype).removeprefix("torch.")
    reason = ("PyTorch's dynamic int8 takes float32 layers only" if kind == "cpu"
              else "PyTorch's dynamic int8 runs on a CPU only")
    return "torchao", (f"torchao's int8 weight-only on the {name} linear layers ({reason}, and this UNet is {name} "
                       f"on {kind})")


def int8_copy(model: torch.nn.Module, method: str) -> torch.nn.Module:
    """A copy of ``model`` quantised by ``method`` (from :func:`int8_method`); the float model is left as it was.

    Raises :class:`~helpers.errors.QuantizationUnavailableError` where torchao is missing, in one line.
    """
    if method == "dynamic":
        return dynamic_int8(model)
    if method == "torchao":
        return torchao_int8_weight_only(model)
    raise ValueError(f"method must be 'dynamic' or 'torchao' (from int8_method), not {method!r}.")
