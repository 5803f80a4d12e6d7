"""``axonml.cuda``: CUDA availability, synchronization, memory statistics and CUDA graphs (through CuPy)."""

from .backend.cuda import (
    device_count,
    empty_cache,
    get_device_name,
    is_available,
    max_memory_allocated,
    memory_allocated,
    memory_reserved,
    reset_peak_memory_stats,
    synchronize,
)
from .backend.graphs import CUDAGraph, graph, is_current_stream_capturing

__all__ = [
    "CUDAGraph", "graph", "is_current_stream_capturing",
    "device_count", "empty_cache", "get_device_name", "is_available", "max_memory_allocated",
    "memory_allocated", "memory_reserved", "reset_peak_memory_stats", "synchronize",
]
