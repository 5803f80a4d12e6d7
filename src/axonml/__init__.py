"""axonml: tensors with autograd on NumPy (CPU) and CuPy (CUDA), PyTorch-style."""

from __future__ import annotations

from . import backend, errors
from .backend import Device
from .backend import Device as device  # noqa: N813 - PyTorch spells it axonml.device
from .backend.allocator import keep_freed_memory as _keep_freed_memory
from .core import Tensor
from .core.creation import (
    arange,
    as_tensor,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    logspace,
    ones,
    ones_like,
    scalar_tensor,
    tensor,
    zeros,
    zeros_like,
)
from .core.dtypes import (
    bfloat16,
    dtype,
    finfo,
    float16,
    float32,
    float64,
    get_default_dtype,
    iinfo,
    int8,
    int16,
    int32,
    int64,
    promote_types,
    result_type,
    set_default_dtype,
    uint8,
)
from .core.dtypes import bool_ as bool  # noqa: A004 - PyTorch's name
from .core.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from .core.tensor import is_tensor

half, float, double = float16, float32, float64  # noqa: A001
long, int, short = int64, int32, int16  # noqa: A001

from . import amp, autograd, cuda, data, io, linalg, nn, optim  # noqa: E402
from ._version import __version__  # noqa: E402
from .autograd.tape import GradientTape  # noqa: E402
from .core.autocast import autocast, get_autocast_dtype, is_autocast_enabled  # noqa: E402
from .io import load, save  # noqa: E402
from .ops import *  # noqa: E402,F403  (the functional API: axonml.exp, axonml.sum, ...)

_keep_freed_memory()  # a training process reuses its freed memory (see backend/allocator.py)
