"""Deterministic train/val/test splits of a dataset, written as index files (and, for images or CSV, as data).

Output folder (see :func:`split_dataset`):

* ``split.json``: ``format`` ``"axonml.split"``, ``version``, ``source`` (the
  dataset's absolute path), ``dataset_format``, ``seed``, ``ratios``,
  ``stratified``, ``mode``, ``classes``, per-split ``counts`` and
  ``class_counts``, and ``files`` (split name -> index file);
* ``train.txt``, ``val.txt``, ``test.txt``: one sample a line, ``<id>\\t<label>``
  sorted by id order in the source. ``<id>`` is ``<part>:<index>`` for array
  formats (``train:17`` = the 18th sample of MNIST's train files,
  ``data_batch_2:5``, ``iris.csv:3`` = the 4th data row), or the image's path
  relative to the dataset folder; ``<label>`` the class index (``-1`` unknown);
* ``mode="symlink"``/``"copy"`` (image folders): ``<split>/<class>/<file>``
  trees of absolute links or copies, themselves image-folder datasets;
  ``mode="copy"`` (CSV): ``<split>.csv`` with the header and the rows.

The same seed, ratios and dataset give the same files, byte for byte.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ._load import DatasetSource

SPLITS = ("train", "val", "test")
MODES = ("index", "symlink", "copy")


def _counts(n: int, train: float, val: float) -> tuple[int, int]:
    n_train = min(n, math.floor(n * train + 0.5))
    n_val = min(n - n_train, math.floor(n * val + 0.5))
    return n_train, n_val


def assign_splits(labels: np.ndarray, train: float, val: float, seed: int, stratify: bool) -> np.ndarray:
    """A split number (0 train, 1 val, 2 test) per sample, drawn with ``seed``; per class when ``stratify``."""
    rng = np.random.default_rng(seed)
    out = np.full(len(labels), 2, dtype=np.int8)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(len(labels))]
    for idx in groups:
        perm = rng.permutation(idx)
        n_train, n_val = _counts(len(idx), train, val)
        out[perm[:n_train]] = 0
        out[perm[n_train:n_train + n_val]] = 1
    return out


def _check_ratios(train: float, val: float) -> float:
    if not (0 <= train <= 1 and 0 <= val <= 1) or train + val > 1 + 1e-9:
        raise ValueError(f"split ratios must be in [0, 1] with train + val <= 1, got train={train} val={val}")
    return max(0.0, 1.0 - train - val)


def _prepare(out: Path, mode: str, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty (pass overwrite=True / --force to replace a split there)")
    out.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        tree = out / name
        if mode != "index" and (tree.is_dir() and not tree.is_symlink()):
            shutil.rmtree(tree)
        for f in (out / f"{name}.txt", out / f"{name}.csv"):
            if f.is_file():
                f.unlink()


def split_dataset(ds: DatasetSource, out: str | os.PathLike[str], *, train: float = 0.8, val: float = 0.1,
                  seed: int = 0, stratify: bool = True, mode: str = "index",
                  overwrite: bool = False) -> dict[str, Any]:
    """Split ``ds`` into train/val/test (test gets the rest) and write the files of the module notes to ``out``.

    ``stratify`` keeps each class's proportions (when labels are known).
    Returns what ``split.json`` holds.
    """
    test = _check_ratios(train, val)
    if mode not in MODES:
        raise ValueError(f"split mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "symlink" and ds.format != "imagefolder":
        raise ValueError(f"--mode symlink needs an image-folder dataset, not {ds.format}")
    if mode == "copy" and ds.format not in ("imagefolder", "csv"):
        raise ValueError(f"--mode copy works for image folders and CSV, not {ds.format}: use the index files")
    refs = [(pi, i) for pi, part in enumerate(ds.parts) for i in range(len(part))]
    if not refs:
        raise ValueError(f"{ds.path}: the dataset has no sample to split")
    has_labels = all(p.labels is not None for p in ds.parts)
    labels = (np.concatenate([p.labels for p in ds.parts if p.labels is not None]) if has_labels
              else np.full(len(refs), -1, dtype=np.int64))
    which = assign_splits(labels, train, val, seed, stratify and has_labels)
    target = Path(out)
    _prepare(target, mode, overwrite)
    classes = ds.classes
    counts: dict[str, int] = {}
    class_counts: dict[str, dict[str, int]] = {}
    for s, name in enumerate(SPLITS):
        chosen = np.flatnonzero(which == s)
        lines = [f"{ds.sample_id(ds.parts[refs[k][0]], refs[k][1])}\t{int(labels[k])}\n" for k in chosen]
        (target / f"{name}.txt").write_text("".join(lines), encoding="utf-8")
        counts[name] = len(chosen)
        if has_labels and classes is not None:
            binc = np.bincount(labels[chosen], minlength=len(classes))
            class_counts[name] = {c: int(n) for c, n in zip(classes, binc)}
        if mode != "index":
            _materialize(ds, target, name, [refs[k] for k in chosen], mode)
    manifest = {
        "format": "axonml.split", "version": 1, "source": str(ds.path.resolve()), "dataset_format": ds.format,
        "seed": seed, "ratios": {"train": train, "val": val, "test": test}, "stratified": bool(stratify and has_labels),
        "mode": mode, "classes": classes, "counts": counts, "class_counts": class_counts,
        "files": {name: f"{name}.txt" for name in SPLITS},
    }
    (target / "split.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def _materialize(ds: DatasetSource, out: Path, split: str, refs: list[tuple[int, int]], mode: str) -> None:
    if ds.format == "csv":
        part = ds.parts[0]
        assert part.rows is not None
        with open(out / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, delimiter=ds.delimiter)
            if ds.header is not None:
                writer.writerow(ds.header)
            writer.writerows(part.rows[i] for _, i in refs)
        return
    assert ds.classes is not None
    tree = out / split
    tree.mkdir()
    for pi, i in refs:
        part = ds.parts[pi]
        assert part.files is not None and part.labels is not None
        src = part.files[i]
        cls = ds.classes[int(part.labels[i])]
        class_root = Path(part.sources[0]) / cls
        dest = tree / cls / src.relative_to(class_root)
        if dest.exists() or dest.is_symlink():
            raise FileExistsError(f"two samples would both become {dest} (the same file name in two parts)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if mode == "symlink":
            dest.symlink_to(src.resolve())
        else:
            shutil.copy2(src, dest)
