"""``axonml.autograd``: grad, backward, Function, forward mode, functional transforms, checks.

- ``grad``/``backward``: the reverse-mode engine (``core/engine.py``).
- ``Function`` (with ``once_differentiable``): user-defined differentiable ops (``core/custom_function.py``).
- ``forward_ad``: forward-mode AD with dual tensors.
- ``functional``: ``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``hvp``, ``vhp`` (as ``torch.autograd.functional``).
- ``GradientTape``: TensorFlow-style recording of gradients.
- ``gradcheck``/``gradgradcheck``: analytical derivatives against finite differences.
- ``detect_anomaly``: name the forward op whose backward produced NaN/Inf.
"""

from ..core import forward_ad
from ..core.anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from ..core.custom_function import Function, FunctionCtx, once_differentiable
from ..core.engine import backward, grad
from . import functional
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .tape import GradientTape

__all__ = [
    "Function", "FunctionCtx", "GradcheckError", "GradientTape", "backward", "detect_anomaly", "forward_ad",
    "functional", "grad", "gradcheck", "gradgradcheck", "is_anomaly_enabled", "once_differentiable",
    "set_detect_anomaly",
]
