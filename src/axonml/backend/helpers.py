"""Per-device helpers for the places where NumPy and CuPy differ."""

from __future__ import annotations

from typing import Any

import numpy as np

from .device import CPU, Device, device_of_array


def move_array(a: Any, device: Device) -> Any:
    """Copy array ``a`` to ``device`` (no copy when it is already there)."""
    src = device_of_array(a)
    if src is device:
        return a
    if device is CPU:
        return a.get()
    xp = device.xp
    with xp.cuda.Device(device.index):
        return xp.asarray(a)


def index_add_at(xp: Any, target: Any, index: Any, values: Any) -> None:
    """``target[index] += values`` with repeated indices accumulated (unbuffered)."""
    if xp is np:
        np.add.at(target, index, values)
    else:
        import cupyx  # only reached with CuPy arrays

        cupyx.scatter_add(target, index, values)


def special_erf(xp: Any, x: Any) -> Any:
    """Elementwise error function."""
    if xp is np:
        from .special import erf

        return erf(x)
    import cupyx.scipy.special as cps

    return cps.erf(x)


def special_erfinv(xp: Any, x: Any) -> Any:
    """Elementwise inverse error function."""
    if xp is np:
        from .special import erfinv

        return erfinv(x)
    import cupyx.scipy.special as cps

    return cps.erfinv(x)
