"""Learning rates that a captured CUDA graph reads from the device, so that schedulers work with graphs.

A kernel launched inside a capture keeps its scalar arguments: a replay would apply the
learning rate of the capture forever. The capture-safe optimizers (SGD, Lion) therefore
launch, while capturing, a variant of their fused kernel that reads the numbers derived
from ``lr`` from a small device array (:func:`reading`), and :class:`DeviceScalars` makes
the graph rewrite that array from the group's current ``lr`` before every replay. A
scheduler's ``step()`` between replays then takes effect as in eager mode, with the same
bits (the numbers are computed in Python and rounded to the dtype, as the eager launch does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backend.fused import Kernel, elementwise
from ..backend.graphs import current_capture


def reading(kernel: Kernel, names: tuple[str, ...]) -> Kernel:
    """``kernel`` with its scalar inputs ``names`` read from a device array ``hp`` (``hp[i]`` for ``names[i]``).

    The other inputs keep their order and ``hp`` follows them, before the outputs.
    """
    ins = [p.strip() for p in kernel.in_params.split(",")]
    kept = [p for p in ins if p.split()[-1] not in names]
    prefix = " ".join(f"const T {n} = hp[{i}];" for i, n in enumerate(names))
    body = f"{prefix} {kernel.body}"
    return elementwise(kernel.name + "_hp", ", ".join([*kept, "raw T hp"]), kernel.out_params, body)


class DeviceScalars:
    """The device arrays of one captured step, one per (parameter group, device, dtype), each refilled with
    ``values(group)`` before every replay of the graph being captured (``CUDAGraph.host_scalars``)."""

    def __init__(self, values: Callable[[dict[str, Any]], tuple[float, ...]]) -> None:
        self.values = values
        self.arrays: dict[tuple[int, Any, Any], Any] = {}

    def get(self, group: dict[str, Any], dev: Any, dtype: Any) -> Any:
        key = (id(group), dev, dtype)
        hp = self.arrays.get(key)
        if hp is None:
            capture = current_capture()
            assert capture is not None, "DeviceScalars is for steps inside a CUDA graph capture"
            hp = self.arrays[key] = capture.host_scalars(lambda: self.values(group), dtype)
        return hp
