"""Shared test setup: the harness is importable, and ../shared is located."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip when the folder is absent (a user's fresh clone)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path


@pytest.fixture
def gradient_copies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shapes of the gradients a leaf's accumulation copies (instead of keeping them), as they happen."""
    from axonml.core import accumulate

    if not accumulate.STEALS:
        pytest.skip("this Python's reference counts are not trusted for stealing: gradients are copied")
    copies: list[tuple[int, ...]] = []
    own = accumulate._own
    monkeypatch.setattr(accumulate, "_own", lambda g: copies.append(g.shape) or own(g))
    return copies
