"""Embedding tables, as ``torch.nn``: ``Embedding`` and ``EmbeddingBag``.

``weight`` is (num_embeddings, embedding_dim), initialized N(0, 1) with the ``padding_idx`` row
zeroed, as PyTorch. Gradients are dense: ``sparse=True`` (PyTorch's sparse COO gradients) is
refused when the layer is built, since axonml has no sparse tensors.
"""

from __future__ import annotations

from typing import Any

from ...core.creation import as_tensor, empty
from ...core.grad_mode import no_grad
from ...core.tensor import Tensor
from ...errors import IndexingError, ShapeError
from .. import init
from ..functional.sparse import embedding, embedding_bag
from ..module import Module
from ..parameter import Parameter

__all__ = ["Embedding", "EmbeddingBag"]


def _normalize_padding_idx(padding_idx: int | None, num_embeddings: int) -> int | None:
    """``padding_idx`` as a row number in [0, num_embeddings) (negative values count from the end)."""
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise IndexingError(f"padding_idx must be within num_embeddings ({num_embeddings}), got {padding_idx}")
    return padding_idx + num_embeddings if padding_idx < 0 else padding_idx


def _refuse_sparse(layer: str, sparse: bool) -> None:
    if sparse:
        raise ValueError(f"{layer}: sparse=True (sparse gradients) is not supported by axonml, which has no sparse "
                         "tensors; use sparse=False (dense gradients, same values)")


def _table(layer: str, num_embeddings: int, embedding_dim: int, weight: Any, device: Any, dtype: Any,
           requires_grad: bool) -> tuple[Parameter, bool]:
    """The weight parameter (a new one, or sharing ``weight``'s memory) and whether it still needs initializing."""
    if weight is None:
        return Parameter(empty((num_embeddings, embedding_dim), device=device, dtype=dtype), requires_grad), True
    w = weight if isinstance(weight, Tensor) else as_tensor(weight)
    if tuple(w.shape) != (num_embeddings, embedding_dim):
        raise ShapeError(f"{layer}: _weight of shape {tuple(w.shape)} does not match num_embeddings and "
                         f"embedding_dim ({num_embeddings}, {embedding_dim})")
    return Parameter(w.detach(), requires_grad), False


def _pretrained_shape(layer: str, embeddings: Any) -> tuple[int, int]:
    shape = tuple(getattr(embeddings, "shape", ()))
    if len(shape) != 2:
        raise ShapeError(f"{layer}.from_pretrained: embeddings must be 2-dimensional (rows, dim), got shape {shape}")
    return int(shape[0]), int(shape[1])


class Embedding(Module):
    """A lookup table: integer indices of any shape -> their rows of ``weight``, output (*input, embedding_dim).

    ``padding_idx``: that row starts at zero and gets no gradient. ``max_norm``: rows looked up
    are first renormalized in place to at most that ``norm_type``-norm. ``scale_grad_by_freq``:
    row gradients are divided by the row's count in the batch.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                 sparse: bool = False, _weight: Any = None, _freeze: bool = False, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__()
        _refuse_sparse("Embedding", sparse)
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = _normalize_padding_idx(padding_idx, num_embeddings)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.weight, fresh = _table("Embedding", num_embeddings, embedding_dim, _weight, device, dtype, not _freeze)
        self.sparse = sparse
        if fresh:
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` ~ N(0, 1), the ``padding_idx`` row zero."""
        init.normal_(self.weight)
        self._fill_padding_idx_with_zero()

    def _fill_padding_idx_with_zero(self) -> None:
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0)

    def forward(self, input: Tensor) -> Tensor:  # noqa: A002
        return embedding(input, self.weight, self.padding_idx, self.max_norm, self.norm_type,
                         self.scale_grad_by_freq, self.sparse)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        return s

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True, padding_idx: int | None = None,
                        max_norm: float | None = None, norm_type: float = 2.0, scale_grad_by_freq: bool = False,
                        sparse: bool = False) -> Embedding:
        """An Embedding whose weight shares memory with ``embeddings`` (rows, dim); frozen unless ``freeze=False``.

        The ``padding_idx`` row is kept as given (not zeroed), as PyTorch.
        """
        rows, cols = _pretrained_shape("Embedding", embeddings)
        return cls(rows, cols, _weight=embeddings, _freeze=freeze, padding_idx=padding_idx, max_norm=max_norm,
                   norm_type=norm_type, scale_grad_by_freq=scale_grad_by_freq, sparse=sparse)


class EmbeddingBag(Module):
    """Sums, means or maxima of bags of embeddings, without building the (bags, length, dim) intermediate.

    ``forward(input, offsets=None, per_sample_weights=None)``: bags are the rows of a 2-d
    ``input``, or the slices of a 1-d ``input`` starting at ``offsets``; output (bags, embedding_dim).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, max_norm: float | None = None,
                 norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = False,
                 _weight: Any = None, include_last_offset: bool = False, padding_idx: int | None = None,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        _refuse_sparse("EmbeddingBag", sparse)
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"EmbeddingBag: mode must be 'sum', 'mean' or 'max', got {mode!r}")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.scale_grad_by_freq = scale_grad_by_freq
        self.padding_idx = _normalize_padding_idx(padding_idx, num_embeddings)
        self.weight, fresh = _table("EmbeddingBag", num_embeddings, embedding_dim, _weight, device, dtype, True)
        if fresh:
            self.reset_parameters()
        self.mode = mode
        self.sparse = sparse
        self.include_last_offset = include_last_offset

    def reset_parameters(self) -> None:
        """``weight`` ~ N(0, 1), the ``padding_idx`` row zero."""
        init.normal_(self.weight)
        if self.padding_idx is not None:
            with no_grad():
                self.weight[self.padding_idx].fill_(0)

    def forward(self, input: Tensor, offsets: Tensor | None = None,  # noqa: A002
                per_sample_weights: Tensor | None = None) -> Tensor:
        return embedding_bag(input, self.weight, offsets, self.max_norm, self.norm_type, self.scale_grad_by_freq,
                             self.mode, self.sparse, per_sample_weights, self.include_last_offset, self.padding_idx)

    def extra_repr(self) -> str:
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        if self.max_norm is not None:
            s += f", max_norm={self.max_norm}"
        if self.norm_type != 2:
            s += f", norm_type={self.norm_type}"
        if self.scale_grad_by_freq is not False:
            s += f", scale_grad_by_freq={self.scale_grad_by_freq}"
        s += f", mode={self.mode!r}"
        if self.padding_idx is not None:
            s += f", padding_idx={self.padding_idx}"
        return s

    @classmethod
    def from_pretrained(cls, embeddings: Any, freeze: bool = True, max_norm: float | None = None,
                        norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean",
                        sparse: bool = False, include_last_offset: bool = False,
                        padding_idx: int | None = None) -> EmbeddingBag:
        """An EmbeddingBag sharing memory with ``embeddings`` (rows, dim); frozen unless ``freeze=False``."""
        rows, cols = _pretrained_shape("EmbeddingBag", embeddings)
        bag = cls(rows, cols, max_norm, norm_type, scale_grad_by_freq, mode, sparse, embeddings,
                  include_last_offset, padding_idx)
        bag.weight.requires_grad_(not freeze)
        return bag
