"""L0: the only layer that knows NumPy from CuPy.

``Device`` maps to an array module (``device.xp``); the per-device helpers
below cover the few places where NumPy and CuPy really differ.
"""

from .device import CPU, Device, as_device, device_of_array
from .helpers import (
    batched_matmul,
    index_add_at,
    matmul,
    move_array,
    select,
    special_erf,
    special_erfinv,
    value_range,
)

__all__ = [
    "CPU",
    "Device",
    "as_device",
    "batched_matmul",
    "device_of_array",
    "index_add_at",
    "matmul",
    "move_array",
    "select",
    "special_erf",
    "special_erfinv",
    "value_range",
]
