"""One exception hierarchy for axonml.

Each error also subclasses the builtin a Python user would catch, so
``except ValueError`` keeps working for shape problems, and so on.
"""

from __future__ import annotations


class AxonmlError(Exception):
    """Base class of every error raised by axonml."""


class ShapeError(AxonmlError, ValueError):
    """Shapes that cannot work together (broadcasting, matmul, reshape...)."""


class DTypeError(AxonmlError, TypeError):
    """A dtype an op does not accept, or an unknown dtype."""


class DeviceError(AxonmlError, RuntimeError):
    """Tensors on different devices, or a device that is not available."""


class GraphCaptureError(DeviceError):
    """A CUDA graph capture or replay that cannot be done (a host sync inside capture, stale state, ...)."""


class AutogradError(AxonmlError, RuntimeError):
    """Misuse of autograd: backward twice, non-scalar backward, stale saved tensors."""


class IndexingError(AxonmlError, IndexError):
    """An index out of range or of the wrong kind."""


__all__ = [
    "AxonmlError", "ShapeError", "DTypeError", "DeviceError", "GraphCaptureError", "AutogradError", "IndexingError",
]
