"""Composed ops (shape): built from primitives, no backward code of their own.

Views (flatten, unflatten, movedim, split, chunk, unbind, select, broadcast_to)
share memory with their input as in PyTorch; repeat, tile, stack, roll,
hstack and vstack return new tensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.methods import cat, shape_arg
from ..core.prims import movement as V
from ..core.tensor import Tensor, _wrap_dim
from ..errors import IndexingError, ShapeError

__all__: list[str] = [
    "broadcast_shapes", "broadcast_tensors", "broadcast_to", "chunk", "flatten", "hstack", "moveaxis",
    "movedim", "ravel", "repeat", "roll", "select", "split", "stack", "tile", "unbind", "unflatten", "vstack",
]


# ----- reshaping views ---------------------------------------------------------------
def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:  # noqa: A002 - PyTorch's name
    """Merge dimensions ``start_dim..end_dim`` into one (a 0-d tensor becomes 1-d)."""
    if input.ndim == 0:
        return input.reshape(1)
    s, e = _wrap_dim(start_dim, input.ndim), _wrap_dim(end_dim, input.ndim)
    if s > e:
        raise ShapeError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    if s == e:
        return input
    shape = input.shape
    n = 1
    for k in shape[s : e + 1]:
        n *= k
    return input.reshape((*shape[:s], n, *shape[e + 1:]))


def ravel(input: Tensor) -> Tensor:  # noqa: A002
    """All elements in one dimension (a view when the layout allows)."""
    return input.reshape(-1)


def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:  # noqa: A002
    """Split dimension ``dim`` into ``sizes`` (one entry may be -1)."""
    d = _wrap_dim(dim, input.ndim)
    sizes = tuple(int(s) for s in sizes)
    if not sizes:
        raise ShapeError("unflatten: sizes must be non-empty")
    n = input.shape[d]
    known = 1
    for s in sizes:
        if s != -1:
            known *= s
    if sizes.count(-1) > 1 or (-1 not in sizes and known != n) or (-1 in sizes and (known == 0 or n % known)):
        raise ShapeError(f"unflatten: sizes {sizes} do not multiply to the size {n} of dimension {dim}")
    sizes = tuple(n // known if s == -1 else s for s in sizes)  # resolved here: other dims may be 0
    return input.reshape(input.shape[:d] + sizes + input.shape[d + 1 :])


def movedim(input: Tensor, source: int | Sequence[int], destination: int | Sequence[int]) -> Tensor:  # noqa: A002
    """Move dimensions ``source`` to positions ``destination``; the others keep their order."""
    n = input.ndim
    src = (source,) if isinstance(source, int) else tuple(source)
    dst = (destination,) if isinstance(destination, int) else tuple(destination)
    if len(src) != len(dst):
        raise ShapeError(f"movedim: source {src} and destination {dst} have different lengths")
    src = tuple(_wrap_dim(s, n) for s in src)
    dst = tuple(_wrap_dim(s, n) for s in dst)
    if len(set(src)) != len(src) or len(set(dst)) != len(dst):
        raise ShapeError(f"movedim: repeated dimension in source {src} or destination {dst}")
    perm: list[int | None] = [None] * n
    for s, d in zip(src, dst):
        perm[d] = s
    rest = iter(i for i in range(n) if i not in src)
    order = tuple(p if p is not None else next(rest) for p in perm)
    return input if order == tuple(range(n)) else input.permute(order)


moveaxis = movedim


def select(input: Tensor, dim: int, index: int) -> Tensor:  # noqa: A002
    """The slice at ``index`` along ``dim``, with that dimension removed (a view)."""
    d = _wrap_dim(dim, input.ndim)
    n = input.shape[d]
    if not -n <= index < n:
        raise IndexingError(f"select: index {index} is out of range for dimension {dim} of size {n}")
    return V.GetItemView.apply(input, (slice(None),) * d + (index % n,))


# ----- splitting -------------------------------------------------------------------------
def split(tensor: Tensor, split_size_or_sections: int | Sequence[int], dim: int = 0) -> tuple[Tensor, ...]:
    """Views of ``split_size`` (the last may be smaller) or of the given ``sections`` along ``dim``."""
    d = _wrap_dim(dim, tensor.ndim)
    n = tensor.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size < 0 or (size == 0 and n > 0):
            raise ShapeError(f"split: split_size must be positive, got {size}")
        sections = [min(size, n - s) for s in range(0, n, size)] if n else [0]
    else:
        sections = [int(s) for s in split_size_or_sections]
        if any(s < 0 for s in sections) or sum(sections) != n:
            raise ShapeError(f"split: sections {sections} do not add up to the size {n} of dimension {dim}")
    out, start = [], 0
    for s in sections:
        out.append(tensor.narrow(d, start, s))
        start += s
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:  # noqa: A002
    """At most ``chunks`` views of equal size (ceil(n / chunks)) along ``dim``; the last may be smaller."""
    if chunks <= 0:
        raise ShapeError(f"chunk: chunks must be positive, got {chunks}")
    d = _wrap_dim(dim, input.ndim)
    n = input.shape[d]
    if n == 0:
        return tuple(input.narrow(d, 0, 0) for _ in range(chunks))
    return split(input, -(-n // chunks), d)


def unbind(input: Tensor, dim: int = 0) -> tuple[Tensor, ...]:  # noqa: A002
    """Every slice along ``dim``, with that dimension removed (views)."""
    d = _wrap_dim(dim, input.ndim)
    return tuple(select(input, d, i) for i in range(input.shape[d]))


# ----- building new tensors ----------------------------------------------------------
def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of one shape along a new dimension ``dim``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    shape = tensors[0].shape
    for t in tensors[1:]:
        if t.shape != shape:
            raise ShapeError(f"stack: all tensors must have one shape, got {shape} and {t.shape}")
    d = _wrap_dim(dim, len(shape) + 1)
    return cat([t.unsqueeze(d) for t in tensors], d)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along dimension 1 (dimension 0 for 1-d tensors); 0-d tensors count as 1-d."""
    ts = [t.reshape(1) if t.ndim == 0 else t for t in tensors]
    if not ts:
        raise ValueError("hstack: expected a non-empty sequence of tensors")
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate along dimension 0 after making every tensor at least 2-d (1-d as a row)."""
    ts = [t.reshape(1, -1) if t.ndim < 2 else t for t in tensors]
    if not ts:
        raise ValueError("vstack: expected a non-empty sequence of tensors")
    return cat(ts, 0)


def repeat(input: Tensor, *sizes: Any) -> Tensor:  # noqa: A002
    """Tile the tensor ``sizes[i]`` times along each dimension (leading new dimensions allowed)."""
    reps = shape_arg(sizes)
    if len(reps) < input.ndim:
        raise ShapeError(f"repeat: {len(reps)} repeat sizes for a tensor with {input.ndim} dimensions")
    if any(r < 0 for r in reps):
        raise ShapeError(f"repeat: negative repeat size in {reps}")
    shape = (1,) * (len(reps) - input.ndim) + input.shape
    # (1, s0, 1, s1, ...) broadcast to (r0, s0, r1, s1, ...): one copy, and the backward is a sum
    inter = tuple(v for s in shape for v in (1, s))
    target = tuple(v for r, s in zip(reps, shape) for v in (r, s))
    final = tuple(r * s for r, s in zip(reps, shape))
    # copy with Clone, not with the last reshape: the result is a new tensor, never a view of input
    return V.Clone.apply(input.reshape(inter).expand(target)).reshape(final)


def tile(input: Tensor, dims: Sequence[int]) -> Tensor:  # noqa: A002
    """Like ``repeat``, but ``dims`` shorter than the tensor's rank is padded with leading 1s."""
    reps = tuple(int(r) for r in dims)
    reps = (1,) * (input.ndim - len(reps)) + reps
    return repeat(input, reps)


def roll(input: Tensor, shifts: int | Sequence[int], dims: int | Sequence[int] | None = None) -> Tensor:  # noqa: A002
    """Shift elements cyclically along ``dims`` (over the flattened tensor when ``dims`` is None)."""
    if dims is None:
        if not isinstance(shifts, int):
            if len(shifts) != 1:
                raise ShapeError(f"roll: {len(shifts)} shifts need as many dims")
            shifts = shifts[0]
        return roll(input.reshape(-1), shifts, 0).reshape(input.shape)
    sh = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    ds = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(sh) != len(ds):
        raise ShapeError(f"roll: shifts {sh} and dims {ds} have different lengths")
    out = input
    for s, d in zip(sh, ds):
        d = _wrap_dim(d, input.ndim)
        n = input.shape[d]
        k = s % n if n else 0
        if k:
            # the last k elements move to the front
            out = cat([out.narrow(d, n - k, k), out.narrow(d, 0, n - k)], d)
    return out if out is not input else V.Clone.apply(input)


# ----- broadcasting --------------------------------------------------------------------
def broadcast_shapes(*shapes: Any) -> tuple[int, ...]:
    """The shape that all ``shapes`` broadcast to (NumPy/PyTorch rules)."""
    norm = [(s,) if isinstance(s, int) else tuple(s) for s in shapes]
    nd = max((len(s) for s in norm), default=0)
    out = [1] * nd
    for s in norm:
        for i, k in enumerate(s, nd - len(s)):
            if k != 1:
                if out[i] not in (1, k):
                    raise ShapeError(f"broadcast_shapes: shapes {tuple(norm)} are not broadcastable")
                out[i] = k
    return tuple(out)


def broadcast_to(input: Tensor, size: Sequence[int]) -> Tensor:  # noqa: A002
    """A broadcast view of ``input`` with shape ``size`` (-1 keeps a dimension)."""
    return input.expand(tuple(size))


def broadcast_tensors(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Views of all tensors broadcast to their common shape."""
    if len(tensors) == 1 and isinstance(tensors[0], list | tuple):
        tensors = tuple(tensors[0])
    shape = broadcast_shapes(*(t.shape for t in tensors))
    return tuple(t.expand(shape) for t in tensors)


# Tensor methods bound by axonml.ops: name -> function taking the tensor first.
METHODS: dict[str, Any] = {
    "flatten": flatten, "ravel": ravel, "unflatten": unflatten, "movedim": movedim, "moveaxis": movedim,
    "select": select, "split": split, "chunk": chunk, "unbind": unbind, "repeat": repeat, "tile": tile,
    "roll": roll, "broadcast_to": broadcast_to,
}
