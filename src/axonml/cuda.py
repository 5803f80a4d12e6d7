"""``axonml.cuda``: CUDA availability, synchronization and memory statistics (through CuPy)."""

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

__all__ = [
    "device_count", "empty_cache", "get_device_name", "is_available", "max_memory_allocated",
    "memory_allocated", "memory_reserved", "reset_peak_memory_stats", "synchronize",
]
