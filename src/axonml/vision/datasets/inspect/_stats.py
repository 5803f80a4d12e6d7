"""What a dataset holds (``describe``) and what is wrong with it (``validate``).

Statistics stream over the samples in chunks (a float64 copy of one chunk at a
time, never of the whole set) and merge per-chunk means and squared deviations
with Chan's pairwise formula, which stays accurate where the textbook
``E[x²] - E[x]²`` cancels.
"""

from __future__ import annotations

import hashlib
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np

from .._base import pil_image
from ._load import DatasetSource, Part, Problem

_CHUNK = 4096  # samples per statistics chunk
_EXAMPLES = 5  # duplicate groups / bad files quoted in a report


class ChannelStats:
    """Count, min, max, mean and standard deviation per channel (NaN skipped), merged chunk by chunk."""

    def __init__(self) -> None:
        self.n: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self.nan = 0

    def update(self, x: np.ndarray) -> None:
        """Add values ``x`` of shape (M, C): M observations of C channels."""
        if x.size == 0:
            return
        if x.dtype == np.uint8:  # a per-channel histogram: exact, and a few times faster than float passes
            self._absorb(*_uint8_moments(x))
            return
        x = np.asarray(x, dtype=np.float64)
        finite = ~np.isnan(x)
        self.nan += int(x.size - finite.sum())
        n = finite.sum(axis=0).astype(np.float64)  # (C,)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.where(n > 0, np.nansum(x, axis=0) / np.maximum(n, 1), 0.0)
            m2 = np.nansum((x - mean) ** 2, axis=0)
            lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
        self._absorb(n, mean, m2, lo, hi)

    def _absorb(self, n: np.ndarray, mean: np.ndarray, m2: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Chan et al.'s pairwise update of count, mean and summed squared deviations."""
        if self.n is None:
            self.n, self.mean, self.m2, self.min, self.max = n, mean, m2, lo, hi
            return
        assert self.mean is not None and self.m2 is not None and self.min is not None and self.max is not None
        total = self.n + n
        delta = mean - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = np.where(total > 0, self.mean + delta * n / np.maximum(total, 1), 0.0)
            self.m2 = self.m2 + m2 + delta**2 * self.n * n / np.maximum(total, 1)
        self.min, self.max = np.fmin(self.min, lo), np.fmax(self.max, hi)
        self.n = total

    def merge(self, other: ChannelStats) -> None:
        """Fold another accumulator's values into this one (same number of channels)."""
        if other.n is None:
            return
        assert other.mean is not None and other.m2 is not None and other.min is not None and other.max is not None
        self._absorb(other.n, other.mean, other.m2, other.min, other.max)
        self.nan += other.nan

    def to_json(self, scale: float | None = None) -> dict[str, Any]:
        """Per-channel lists; with ``scale`` (255 for 8-bit pixels) also ``mean_scaled``/``std_scaled``."""
        if self.n is None:
            return {"channels": 0}
        assert self.mean is not None and self.m2 is not None and self.min is not None and self.max is not None
        std = np.sqrt(self.m2 / np.maximum(self.n, 1))
        out: dict[str, Any] = {"channels": len(self.n), "count": int(self.n.max()), "min": _floats(self.min),
                               "max": _floats(self.max), "mean": _floats(self.mean), "std": _floats(std)}
        if self.nan:
            out["nan"] = self.nan
        if scale:
            out["mean_scaled"] = _floats(self.mean / scale)
            out["std_scaled"] = _floats(std / scale)
        return out


def _uint8_moments(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """(count, mean, squared deviations, min, max) per channel of uint8 values (M, C), from histograms."""
    c = x.shape[1]
    codes = x + np.arange(0, 256 * c, 256, dtype=np.int32)  # (M, C): value + 256 * channel
    hist = np.bincount(codes.ravel(), minlength=256 * c).reshape(c, 256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    n = hist.sum(axis=1)
    mean = hist @ values / np.maximum(n, 1)
    m2 = (hist * (values[None, :] - mean[:, None]) ** 2).sum(axis=1)
    seen = hist > 0
    lo = np.where(n > 0, seen.argmax(axis=1), np.nan).astype(np.float64)
    hi = np.where(n > 0, 255 - seen[:, ::-1].argmax(axis=1), np.nan).astype(np.float64)
    return n, mean, m2, lo, hi


def _floats(a: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in a]


def _channels(samples: np.ndarray) -> int:
    """Channels of stored samples: the last axis of (N, H, W, C), 1 for (N, H, W), features for (N, F)."""
    if samples.ndim == 4:
        return int(samples.shape[-1])
    if samples.ndim == 2:
        return int(samples.shape[1])
    return 1


def decode_image(path: Any) -> tuple[np.ndarray | None, str, str | None]:
    """(RGB pixels (H, W, 3) uint8, the file's mode, None) or (None, '', the error) for an unreadable file."""
    Image = pil_image()
    try:
        with Image.open(path) as img:
            mode = img.mode
            img.load()  # decodes now: a truncated file fails here, not later
            return np.asarray(img.convert("RGB")), mode, None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return None, "", f"{type(e).__name__}: {e}"


def iter_samples(part: Part) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
    """(index, sample array or None, error or None) for each sample of a part, in order."""
    if part.samples is not None:
        for i in range(len(part.samples)):
            yield i, part.samples[i], None
    elif part.files is not None:
        for i, f in enumerate(part.files):
            arr, _, err = decode_image(f)
            yield i, arr, err


def _class_counts(labels: np.ndarray | None, classes: list[str] | None) -> list[int] | None:
    if labels is None or not labels.size or labels.min() < 0:
        return None
    return np.bincount(labels, minlength=len(classes or [])).tolist()


def _named(counts: list[int] | None, classes: list[str] | None) -> dict[str, int] | None:
    if counts is None:
        return None
    names = classes if classes is not None and len(classes) == len(counts) else [str(i) for i in range(len(counts))]
    return dict(zip(names, counts))


def describe(ds: DatasetSource) -> dict[str, Any]:
    """Counts, shapes, dtypes, class distribution and pixel (or feature) statistics, per part and overall."""
    pooled = ChannelStats()
    parts = []
    scale: float | None = None
    all_labels = [p.labels for p in ds.parts if p.labels is not None]
    for part in ds.parts:
        stats = ChannelStats()
        info: dict[str, Any] = {"name": part.name, "num_samples": len(part), "sources": part.sources}
        if part.samples is not None:
            x = part.samples
            info["sample_shape"] = list(x.shape[1:])
            info["dtype"] = x.dtype.name
            scale = 255.0 if x.dtype == np.uint8 else None
            c = _channels(x)
            for at in range(0, len(x), _CHUNK):
                chunk = x[at:at + _CHUNK]
                stats.update(chunk.reshape(-1, c) if x.ndim != 2 else chunk)
        elif part.files is not None:
            sizes: Counter[str] = Counter()
            modes: Counter[str] = Counter()
            bad = []
            for f in part.files:
                arr, mode, _ = decode_image(f)
                if arr is None:
                    bad.append(str(f))
                    continue
                sizes[f"{arr.shape[0]}x{arr.shape[1]}"] += 1
                modes[mode] += 1
                stats.update(arr.reshape(-1, 3))
            info.update(dtype="uint8", image_sizes=dict(sizes.most_common()), modes=dict(modes.most_common()),
                        unreadable=len(bad), unreadable_examples=bad[:_EXAMPLES])
            scale = 255.0
        if part.labels is not None:
            info["label_dtype"] = part.labels.dtype.name
            info["class_counts"] = _named(_class_counts(part.labels, ds.classes), ds.classes)
        info["pixel_stats" if ds.format != "csv" else "feature_stats"] = stats.to_json(scale)
        pooled.merge(stats)
        parts.append(info)
    labels = np.concatenate(all_labels) if all_labels else None
    out: dict[str, Any] = {
        "path": str(ds.path), "format": ds.format, "num_samples": ds.num_samples,
        "num_classes": len(ds.classes) if ds.classes is not None else None, "classes": ds.classes,
        "class_counts": _named(_class_counts(labels, ds.classes), ds.classes), "parts": parts,
        "pixel_stats" if ds.format != "csv" else "feature_stats": pooled.to_json(scale),
    }
    if ds.format == "csv":
        out["columns"] = ds.header
        out["label_column"] = ds.label_column
    if ds.problems:
        out["problems"] = [p.to_json() for p in ds.problems]
    return out


# ----- validation ----------------------------------------------------------------------------------
def _digest(arr: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((arr.shape, arr.dtype.str)).encode())
    h.update(np.ascontiguousarray(arr).data)
    return h.digest()


def validate(ds: DatasetSource, *, max_imbalance: float = 2.0, duplicates: bool = True) -> dict[str, Any]:
    """Problems of a dataset: corrupt files (from loading and decoding), bad labels, imbalance, duplicates.

    Class imbalance is a warning when the largest class has more than
    ``max_imbalance`` times the samples of the smallest (or a class has none).
    Exact duplicates (same bytes, hashed) are warnings, with the groups whose
    labels disagree and those that span parts (train/test leakage) counted apart.
    """
    problems = list(ds.problems)
    groups: dict[bytes, list[tuple[int, int]]] = {}
    checked = 0
    for pi, part in enumerate(ds.parts):
        if part.labels is not None and ds.classes is not None and part.labels.size:
            bad = np.flatnonzero((part.labels < 0) | (part.labels >= len(ds.classes)))
            if bad.size:
                problems.append(Problem("error", "label", f"part {part.name!r}: {bad.size} labels outside "
                                        f"[0, {len(ds.classes)})", {"part": part.name, "indices": bad[:10].tolist()}))
        if part.samples is None and part.files is None:
            continue
        for i, arr, err in iter_samples(part):
            if arr is None:
                problems.append(Problem("error", "corrupt", f"unreadable image {ds.sample_id(part, i)} ({err})",
                                        {"file": str(part.files[i]) if part.files else None}))
                continue
            checked += 1
            if duplicates:
                groups.setdefault(_digest(arr), []).append((pi, i))
        if ds.format == "csv" and part.samples is not None:
            nan_rows = int(np.isnan(part.samples).any(axis=1).sum())
            if nan_rows:
                problems.append(Problem("warning", "missing", f"{nan_rows} rows have missing (NaN) values",
                                        {"rows": nan_rows}))
    labels = [p.labels for p in ds.parts if p.labels is not None]
    counts = _class_counts(np.concatenate(labels), ds.classes) if labels else None
    imbalance = None
    if counts:
        empty = [n for n, c in (_named(counts, ds.classes) or {}).items() if c == 0]
        if empty:
            problems.append(Problem("warning", "empty-class", f"{len(empty)} classes have no sample: "
                                    f"{', '.join(empty[:10])}", {"classes": empty}))
        nonzero = [c for c in counts if c]
        imbalance = max(nonzero) / min(nonzero) if nonzero else None
        if imbalance is not None and imbalance > max_imbalance:
            problems.append(Problem("warning", "imbalance", f"class imbalance: the largest class has "
                                    f"{imbalance:.2f}x the samples of the smallest (threshold {max_imbalance:g})",
                                    {"ratio": imbalance}))
    dup = _duplicates(ds, groups) if duplicates else None
    if dup and dup["groups"]:
        problems.append(Problem("warning", "duplicate", f"{dup['extra_copies']} exact duplicate samples in "
                                f"{dup['groups']} groups ({dup['conflicting_labels']} with disagreeing labels, "
                                f"{dup['across_parts']} across parts)", dup))
    errors = sum(p.severity == "error" for p in problems)
    return {"path": str(ds.path), "format": ds.format, "num_samples": ds.num_samples, "checked": checked,
            "class_counts": _named(counts, ds.classes), "imbalance_ratio": imbalance, "duplicates": dup,
            "errors": errors, "warnings": len(problems) - errors, "problems": [p.to_json() for p in problems]}


def _duplicates(ds: DatasetSource, groups: dict[bytes, list[tuple[int, int]]]) -> dict[str, Any]:
    dups = [g for g in groups.values() if len(g) > 1]
    conflicting = across = 0
    examples: list[list[str]] = []
    for g in dups:
        labs = {int(ds.parts[pi].labels[i]) for pi, i in g if ds.parts[pi].labels is not None}  # type: ignore[index]
        conflicting += len(labs) > 1
        across += len({pi for pi, _ in g}) > 1
        if len(examples) < _EXAMPLES:
            examples.append([ds.sample_id(ds.parts[pi], i) for pi, i in g])
    return {"groups": len(dups), "extra_copies": sum(len(g) - 1 for g in dups), "conflicting_labels": conflicting,
            "across_parts": across, "examples": examples}
