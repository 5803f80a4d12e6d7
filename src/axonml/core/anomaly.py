"""Anomaly detection: name the forward op whose backward produced NaN or Inf."""

from __future__ import annotations

import threading
from typing import Any


class _AnomalyState(threading.local):
    enabled: bool = False
    check_nan: bool = True


ANOMALY = _AnomalyState()


class detect_anomaly:  # noqa: N801 - PyTorch's name
    """Inside this block, forward ops remember where they were called, and a
    backward that produces a NaN or Inf gradient raises an error naming the op
    and showing that forward call. It slows every op: use it to debug."""

    def __init__(self, check_nan: bool = True) -> None:
        self.check_nan = check_nan
        self._prev: list[tuple[bool, bool]] = []

    def __enter__(self) -> None:
        self._prev.append((ANOMALY.enabled, ANOMALY.check_nan))
        ANOMALY.enabled, ANOMALY.check_nan = True, self.check_nan

    def __exit__(self, *exc: Any) -> None:
        ANOMALY.enabled, ANOMALY.check_nan = self._prev.pop()


def set_detect_anomaly(mode: bool) -> None:
    """Turn anomaly detection on or off for this thread."""
    ANOMALY.enabled = bool(mode)


def is_anomaly_enabled() -> bool:
    return ANOMALY.enabled
