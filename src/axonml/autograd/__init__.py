"""``axonml.autograd``: grad, backward, Function, forward mode, functional transforms, checks."""

from ..core.anomaly import detect_anomaly, is_anomaly_enabled, set_detect_anomaly
from ..core.engine import backward, grad
from ..core.function import Function, FunctionCtx, once_differentiable
from ..core import forward_ad

__all__ = [
    "Function", "FunctionCtx", "backward", "detect_anomaly", "forward_ad", "grad", "is_anomaly_enabled",
    "once_differentiable", "set_detect_anomaly",
]
