"""Finding out what a dataset path holds (IDX, CIFAR batches, an image-folder tree, CSV) and reading it.

Every format becomes a :class:`DatasetSource`: a list of :class:`Part` (the
splits as stored: ``train``/``t10k`` for MNIST, one per CIFAR batch, one per
split folder or ``all`` for an image tree, the file for a CSV), each with
integer labels and either the samples as one array or the image files.
With ``tolerant=True`` a corrupt file becomes a :class:`Problem` on the
source instead of an exception (what ``validate`` wants).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._base import DatasetFileError
from ..folder import IMG_EXTENSIONS, has_file_allowed_extension
from ..idx import read_idx
from ..safe_pickle import load_pickle

FORMATS = ("idx", "cifar", "imagefolder", "csv")
SPLIT_FOLDERS = ("train", "training", "val", "valid", "validation", "test", "testing")
_IDX_NAME = re.compile(r"^(?P<part>.+?)[-_.](?P<kind>images|labels)[-_.]idx(?P<ndim>\d)[-_.]ubyte(\.gz)?$")


@dataclass
class Problem:
    """One finding: ``severity`` ``error`` (corrupt, inconsistent) or ``warning`` (imbalance, duplicates)."""

    severity: str
    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"severity": self.severity, "kind": self.kind, "message": self.message, **self.details}


@dataclass
class Part:
    """One stored split: labels (N,) int64 or None, and samples as an array (N, ...) or as image files."""

    name: str
    labels: np.ndarray | None
    samples: np.ndarray | None = None
    files: list[Path] | None = None
    sources: list[str] = field(default_factory=list)
    rows: list[list[str]] | None = None  # CSV: the raw fields of each sample, for copying splits exactly

    def __len__(self) -> int:
        if self.samples is not None:
            return len(self.samples)
        if self.files is not None:
            return len(self.files)
        return 0 if self.labels is None else len(self.labels)


@dataclass
class DatasetSource:
    """A dataset on disk: its ``format``, ``parts``, class names, and the problems met while reading it."""

    path: Path
    format: str
    parts: list[Part]
    classes: list[str] | None = None
    problems: list[Problem] = field(default_factory=list)
    header: list[str] | None = None  # CSV
    label_column: int | None = None  # CSV
    delimiter: str = ","

    @property
    def num_samples(self) -> int:
        return sum(len(p) for p in self.parts)

    def sample_id(self, part: Part, index: int) -> str:
        """A stable name for one sample: ``part:index``, or an image's path relative to the dataset root."""
        if part.files is not None:
            return part.files[index].relative_to(self.path).as_posix()
        return f"{part.name}:{index}"


class _Failures:
    """Collects errors in tolerant mode, raises them otherwise."""

    def __init__(self, tolerant: bool) -> None:
        self.tolerant = tolerant
        self.problems: list[Problem] = []

    def error(self, kind: str, message: str, **details: Any) -> None:
        if not self.tolerant:
            raise DatasetFileError(message)
        self.problems.append(Problem("error", kind, message, details))


# ----- detection -----------------------------------------------------------------------------------
def _idx_header(path: Path) -> bytes:
    """The first 4 bytes of a file, through gzip when it is gzipped ('' when unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as g:
                return g.read(4)
    except (OSError, EOFError, zlib.error):
        return b""
    return head


def _is_idx(path: Path) -> bool:
    head = _idx_header(path)
    return len(head) == 4 and head[0] == 0 and head[1] == 0 and head[2] in (8, 9, 11, 12, 13, 14) and head[3] > 0


def _cifar_folder(path: Path) -> Path | None:
    for folder in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
        if (folder / "batches.meta").is_file() or ((folder / "meta").is_file() and (folder / "train").is_file()):
            return folder
    return None


def _image_classes(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def detect_format(path: str | os.PathLike[str]) -> str:
    """``idx``, ``cifar``, ``imagefolder`` or ``csv`` for a dataset path; ``ValueError`` when none fits."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() in (".csv", ".tsv"):
            return "csv"
        if _is_idx(p):
            return "idx"
        raise ValueError(f"{p}: not a dataset file this tool reads (an IDX file, or CSV with a .csv/.tsv name)")
    if _cifar_folder(p) is not None:
        return "cifar"
    files = sorted(x for x in p.iterdir() if x.is_file())
    if any(_IDX_NAME.match(x.name) for x in files) or any(_is_idx(x) for x in files if x.stat().st_size < 1 << 31):
        return "idx"
    if _image_classes(p):
        return "imagefolder"
    raise ValueError(f"{p}: not a dataset this tool recognises (IDX files, CIFAR batches, per-class image folders "
                     "or a CSV file)")


# ----- IDX -----------------------------------------------------------------------------------------
def _idx_pairs(p: Path) -> list[tuple[str, Path | None, Path | None]]:
    """(part name, images file, labels file) for the IDX files at ``p`` (a folder or one file)."""
    files = [p] if p.is_file() else sorted(x for x in p.iterdir() if x.is_file())
    folder = p.parent if p.is_file() else p
    pairs: dict[str, dict[str, Path]] = {}
    for f in files:
        m = _IDX_NAME.match(f.name)
        if m:
            pairs.setdefault(m["part"], {})[m["kind"]] = f
        elif _is_idx(f):
            pairs.setdefault(f.name, {})["images"] = f
    if p.is_file():  # one file named: pick up its partner beside it
        m = _IDX_NAME.match(p.name)
        if m:
            for x in sorted(folder.iterdir()):
                mx = _IDX_NAME.match(x.name)
                if mx and mx["part"] == m["part"] and x.is_file():
                    pairs[m["part"]].setdefault(mx["kind"], x)
    return [(name, kinds.get("images"), kinds.get("labels")) for name, kinds in pairs.items()]


def _read_idx(path: Path, fails: _Failures) -> np.ndarray | None:
    try:
        return read_idx(path)
    except DatasetFileError as e:
        fails.error("corrupt", str(e), file=str(path))
    return None


def _load_idx(p: Path, fails: _Failures) -> DatasetSource:
    parts: list[Part] = []
    for name, images_file, labels_file in _idx_pairs(p):
        images = _read_idx(images_file, fails) if images_file is not None else None
        labels = _read_idx(labels_file, fails) if labels_file is not None else None
        sources = [str(f) for f in (images_file, labels_file) if f is not None]
        if labels is not None and labels.ndim != 1:
            fails.error("format", f"{labels_file}: labels must be 1-D, got shape {labels.shape}", file=str(labels_file))
            labels = None
        if images is not None and labels is not None and len(images) != len(labels):
            fails.error("mismatch", f"part {name!r}: {len(images)} images but {len(labels)} labels",
                        files=sources)
            labels = None
        if images is None and labels is None:
            continue
        if images is None and labels_file is not None and images_file is None:
            fails.error("missing", f"part {name!r}: labels {labels_file.name} without an images file", files=sources)
        parts.append(Part(name, None if labels is None else labels.astype(np.int64), images, sources=sources))
    if not parts and not fails.problems:
        raise ValueError(f"{p}: no readable IDX file")
    known = [p.labels for p in parts if p.labels is not None]
    top = max((int(lab.max()) for lab in known if lab.size), default=-1)
    low = min((int(lab.min()) for lab in known if lab.size), default=0)
    classes = [str(i) for i in range(top + 1)] if low >= 0 and top < 10_000 else None
    return DatasetSource(p, "idx", parts, classes, fails.problems)


# ----- CIFAR ---------------------------------------------------------------------------------------
def _load_cifar(p: Path, fails: _Failures) -> DatasetSource:
    folder = _cifar_folder(p)
    assert folder is not None
    hundred = not (folder / "batches.meta").is_file()
    meta_file = folder / ("meta" if hundred else "batches.meta")
    names_key, label_key = ("fine_label_names", "fine_labels") if hundred else ("label_names", "labels")
    classes: list[str] | None = None
    try:
        meta = load_pickle(meta_file)
        names = meta.get(names_key) if isinstance(meta, dict) else None
        if isinstance(names, list):
            classes = [n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names]
        else:
            fails.error("format", f"{meta_file}: no list of class names under {names_key!r}", file=str(meta_file))
    except DatasetFileError as e:
        fails.error("corrupt", str(e), file=str(meta_file))
    batch_names = ["train", "test"] if hundred else (
        [*sorted(x.name for x in folder.iterdir() if x.name.startswith("data_batch_")), "test_batch"])
    parts: list[Part] = []
    for name in batch_names:
        path = folder / name
        if not path.is_file():
            continue
        try:
            batch = load_pickle(path)
        except DatasetFileError as e:
            fails.error("corrupt", str(e), file=str(path))
            continue
        rows = batch.get("data") if isinstance(batch, dict) else None
        labels = batch.get(label_key) if isinstance(batch, dict) else None
        if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
            fails.error("format", f"{path}: expected 'data' as uint8 (N, 3072)", file=str(path))
            continue
        if not isinstance(labels, list | np.ndarray) or len(labels) != len(rows):
            have = len(labels) if isinstance(labels, list | np.ndarray) else "no"
            fails.error("mismatch", f"{path}: {len(rows)} images but {have} labels", file=str(path))
            continue
        images = rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # (N, 32, 32, 3) HWC, as torchvision
        parts.append(Part(name, np.asarray(labels, dtype=np.int64), images, sources=[str(path)]))
    if not parts and not fails.problems:
        raise ValueError(f"{folder}: no CIFAR batch found")
    return DatasetSource(folder, "cifar", parts, classes, fails.problems)


# ----- image folders -------------------------------------------------------------------------------
def _class_files(folder: Path, cls: str) -> list[Path]:
    out: list[Path] = []
    for root, dirs, names in os.walk(folder / cls, followlinks=True):
        dirs.sort()
        out += [Path(root) / n for n in sorted(names) if has_file_allowed_extension(n, IMG_EXTENSIONS)]
    return out


def _load_imagefolder(p: Path, fails: _Failures) -> DatasetSource:
    top = _image_classes(p)
    is_splits = bool(top) and all(t.lower() in SPLIT_FOLDERS and _image_classes(p / t) for t in top)
    roots = [(t, p / t) for t in top] if is_splits else [("all", p)]
    classes = sorted({c for _, r in roots for c in _image_classes(r)})
    index = {c: i for i, c in enumerate(classes)}
    parts = []
    for name, root in roots:
        files: list[Path] = []
        labels: list[int] = []
        for cls in _image_classes(root):
            found = _class_files(root, cls)
            files += found
            labels += [index[cls]] * len(found)
        parts.append(Part(name, np.asarray(labels, dtype=np.int64), files=files, sources=[str(root)]))
    return DatasetSource(p, "imagefolder", parts, classes, fails.problems)


# ----- CSV -----------------------------------------------------------------------------------------
def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _int_like(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return value.is_integer()


def _load_csv(p: Path, fails: _Failures, label_column: str | int | None) -> DatasetSource:
    text = p.read_text(encoding="utf-8-sig", errors="replace")
    delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
    if p.suffix.lower() != ".tsv":
        with contextlib.suppress(csv.Error):  # no clear delimiter: keep the comma
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{p}: the CSV file is empty")
    first = rows[0]
    second = rows[1] if len(rows) > 1 else None
    has_header = not all(_number(c) for c in first) and (
        second is None or all(not _number(c) for c in first)
        or any(not _number(a) and _number(b) for a, b in zip(first, second)))
    header = [c.strip() for c in first] if has_header else None
    body = rows[1:] if has_header else rows
    width = len(first)
    if isinstance(label_column, str) and not label_column.lstrip("-").isdigit():
        if header is None or label_column not in header:
            raise ValueError(f"{p}: no column named {label_column!r} (columns: {header or 'no header'})")
        col = header.index(label_column)
    else:
        col = int(label_column) if label_column is not None else -1
        if not -width <= col < width:
            raise ValueError(f"{p}: label column {col} is out of range for {width} columns")
        col %= width
    features: list[list[float]] = []
    raw_labels: list[str] = []
    kept: list[list[str]] = []
    line0 = 2 if has_header else 1
    for i, row in enumerate(body):
        line = line0 + i
        if len(row) != width:
            fails.error("corrupt", f"{p}: line {line} has {len(row)} fields, expected {width}", line=line)
            continue
        cells = [c for j, c in enumerate(row) if j != col]
        try:
            values = [float(c) for c in cells]
        except ValueError:
            bad = next(c for c in cells if not _number(c))
            fails.error("corrupt", f"{p}: line {line}: {bad!r} is not a number", line=line)
            continue
        features.append(values)
        raw_labels.append(row[col].strip())
        kept.append(row)
    numeric = bool(raw_labels) and all(_int_like(v) for v in raw_labels)
    names = sorted(set(raw_labels), key=lambda v: int(float(v))) if numeric else sorted(set(raw_labels))
    index = {v: i for i, v in enumerate(names)}
    samples = np.asarray(features, dtype=np.float64).reshape(len(features), width - 1)
    labels = np.asarray([index[v] for v in raw_labels], dtype=np.int64)
    part = Part(p.name, labels, samples, sources=[str(p)], rows=kept)
    return DatasetSource(p, "csv", [part], names, fails.problems, header=header, label_column=col,
                         delimiter=delimiter)


def open_dataset(path: str | os.PathLike[str], *, format: str | None = None,  # noqa: A002 - the CLI's word
                 label_column: str | int | None = None, tolerant: bool = False) -> DatasetSource:
    """Read the dataset at ``path`` (``format`` detected unless given; see :func:`detect_format`).

    ``label_column`` (CSV): a column name or index (default: the last column).
    ``tolerant``: record corrupt files as problems instead of raising.
    """
    p = Path(path)
    fmt = format or detect_format(p)
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r} (one of {', '.join(FORMATS)})")
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    fails = _Failures(tolerant)
    if fmt == "idx":
        return _load_idx(p, fails)
    if fmt == "cifar":
        if _cifar_folder(p) is None:
            raise ValueError(f"{p}: no CIFAR batches (batches.meta or meta) here")
        return _load_cifar(p, fails)
    if fmt == "imagefolder":
        if not p.is_dir():
            raise ValueError(f"{p}: an image-folder dataset is a folder")
        return _load_imagefolder(p, fails)
    if not p.is_file():
        raise ValueError(f"{p}: a CSV dataset is a file")
    return _load_csv(p, fails, label_column)
