"""Composed ops (math): built from primitives, no backward code of their own."""

from __future__ import annotations

from typing import Any

__all__: list[str] = []

# Tensor methods bound by axonml.ops: name -> function taking the tensor first.
METHODS: dict[str, Any] = {}
