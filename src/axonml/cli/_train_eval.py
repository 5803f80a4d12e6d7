"""Inference over a dataset and classification metrics, shared by ``train`` (validation) and ``eval``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backend import Device
from ..core import grad_mode
from ..core.tensor import Tensor
from ..data import DataLoader, Dataset
from ..nn import Module


def run_inference(model: Module, dataset: Dataset[Any], *, prepare: Callable[[Tensor], Tensor] | None,
                  device: Device, batch_size: int, workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, C) float32, targets (N,) int64) of ``model`` in eval mode over ``dataset``, in order.

    ``prepare`` turns a batch (moved to ``device``) into the model's input (``None``: it already is one).
    The model's training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    outputs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    try:
        with grad_mode.no_grad():
            for x, y in loader:
                x = x.to(device)
                logits = model(prepare(x) if prepare is not None else x)
                outputs.append(np.asarray(logits.float().detach().cpu().numpy()))
                labels.append(np.asarray(y.numpy() if isinstance(y, Tensor) else y, dtype=np.int64))
    finally:
        model.train(was_training)
    if not outputs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(outputs), np.concatenate(labels)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (shifted by the row maximum, so large logits do not overflow)."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities (float64)."""
    return np.exp(log_softmax(logits))  # type: ignore[no-any-return]


def loss_and_accuracy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``logits`` (N, C) against ``targets`` (N,)."""
    if len(targets) == 0:
        return float("nan"), float("nan")
    loss = -log_softmax(logits)[np.arange(len(targets)), targets].mean()
    return float(loss), float((logits.argmax(axis=1) == targets).mean())


def classification_metrics(logits: np.ndarray, targets: np.ndarray, classes: list[str],
                           top_k: int = 5) -> dict[str, Any]:
    """Loss, accuracy, top-k accuracy, per-class precision/recall/F1/support, their macro and
    support-weighted averages, and the confusion matrix (rows: true class, columns: predicted class).

    A class that is never predicted has precision 0, one with no samples recall 0 (and F1 0 when
    both are 0), as scikit-learn's ``zero_division=0``.
    """
    n, c = len(targets), len(classes)
    if logits.ndim != 2 or logits.shape[0] != n or logits.shape[1] != c:
        raise ValueError(f"metrics: logits of shape {list(logits.shape)} do not match {n} targets of {c} classes")
    if n and (targets.min() < 0 or targets.max() >= c):
        raise ValueError(f"metrics: a target is outside [0, {c})")
    loss, accuracy = loss_and_accuracy(logits, targets)
    k = min(top_k, c)
    # a sample counts for top-k when fewer than k classes score strictly higher than its own
    own = logits[np.arange(n), targets][:, None]
    topk = float(((logits > own).sum(axis=1) < k).mean()) if n else float("nan")
    predictions = logits.argmax(axis=1)
    confusion = np.zeros((c, c), np.int64)
    np.add.at(confusion, (targets, predictions), 1)
    tp = np.diag(confusion).astype(np.float64)
    predicted, support = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(c), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(c), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(c), where=denom > 0)
    weights = support / max(n, 1)
    return {
        "samples": int(n),
        "loss": loss,
        "accuracy": accuracy,
        f"top{k}_accuracy": topk,
        "top_k": k,
        "per_class": [
            {"class": classes[i], "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "support": int(support[i])}
            for i in range(c)
        ],
        "macro": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean())},
        "weighted": {"precision": float((precision * weights).sum()), "recall": float((recall * weights).sum()),
                     "f1": float((f1 * weights).sum())},
        "confusion_matrix": confusion.tolist(),
    }
