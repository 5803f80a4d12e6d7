"""``axonml.amp``: automatic mixed precision, as ``torch.amp``.

``autocast`` runs the ops of a region in mixed precision (see ``core/autocast.py``
and docs/amp.md for the per-op policy); ``GradScaler`` scales the loss so float16
gradients do not underflow, and skips the steps whose gradients overflowed.
"""

from ..core.autocast import (
    autocast,
    get_autocast_dtype,
    is_autocast_available,
    is_autocast_cache_enabled,
    is_autocast_enabled,
)
from .grad_scaler import GradScaler

__all__ = [
    "GradScaler", "autocast", "get_autocast_dtype", "is_autocast_available", "is_autocast_cache_enabled",
    "is_autocast_enabled",
]
