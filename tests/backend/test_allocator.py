"""The C allocator's policy (backend/allocator.py): applied at import, opt-out, and it removes page faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from axonml.backend import allocator

GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION") is not None

# a step's worth of arrays, allocated and freed again and again: page faults per round after the first
_PROBE = """
import json, resource
import numpy as np
import axonml
def rounds():
    for _ in range(20):
        a = [np.ones(150_000) for _ in range(10)]  # 1.2 MB each, as LeNet's conv outputs
        del a
rounds()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds()
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20))
"""


def _faults_per_round(env: dict[str, str]) -> float:
    out = subprocess.run([sys.executable, "-c", _PROBE], env={**os.environ, **env}, capture_output=True, text=True,
                         check=True, timeout=120)
    return float(json.loads(out.stdout))


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's")
def test_import_keeps_freed_memory_and_the_opt_out_does_not() -> None:
    tuned = _faults_per_round({"AXONML_MALLOC_TUNE": "1"})
    plain = _faults_per_round({"AXONML_MALLOC_TUNE": "0"})
    assert tuned < 10  # the arrays reuse the heap's pages
    assert plain > 100  # glibc gives the freed heap top back each round: ~2,900 fresh pages a round


def test_opt_out_and_user_settings_are_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AXONML_MALLOC_TUNE", "0")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv("AXONML_MALLOC_TUNE")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "100000")
    assert allocator.keep_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=100000")
    assert allocator.keep_freed_memory() is False


@pytest.mark.skipif(not GLIBC, reason="the settings are glibc's")
def test_applies_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AXONML_MALLOC_TUNE", "GLIBC_TUNABLES", *allocator._USER_SETTINGS):
        monkeypatch.delenv(var, raising=False)
    assert allocator.keep_freed_memory() is True
