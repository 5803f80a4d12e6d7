"""``axonml data info|validate|split PATH``: look at a dataset before training on it.

Formats (detected, or named with ``--format``): IDX files (MNIST's, gzipped or
not), CIFAR-10/100 Python batch folders, image-folder trees (one folder per
class, optionally under train/val/test folders), CSV (label in the last column
or ``--label-column``). The logic lives in :mod:`axonml.vision.datasets.inspect`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..vision.datasets.inspect import FORMATS, describe, open_dataset, split_dataset, validate
from ._app import JSON_OPTION, app, emit_json, handle_errors
from ._output import make_console, reflow_doc

data_app = typer.Typer(name="data", help="Inspect, validate and split datasets (IDX, CIFAR batches, image "
                       "folders, CSV).", no_args_is_help=True)
app.add_typer(data_app, name="data")

_FORMAT_HELP = "Dataset format: idx, cifar, imagefolder or csv (default: detected)."
_LABEL_HELP = "CSV: the label column, a name or an index (default: the last column)."
# Typer reads a parameter's default to learn its CLI shape; module-level objects keep ruff's B008 quiet
PATH_ARG = typer.Argument(..., help="A dataset file or folder.")
SPLIT_OUT = typer.Option(..., "-o", "--output", help="Folder for the split (created; must be empty unless --force).")
_MAX_ROWS = 16  # statistics columns shown in a table (all of them are in --json)


def _open(path: Path, format: str | None, label_column: str | None, tolerant: bool = False) -> Any:  # noqa: A002
    """The dataset at ``path``; an unknown ``--format`` is a usage error (exit 2)."""
    if format is not None and format not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    return open_dataset(path, format=format, label_column=label_column, tolerant=tolerant)


def _fmt(values: list[Any] | None, digits: int = 4) -> str:
    if not values:
        return "--"
    shown = [f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in values[:_MAX_ROWS]]
    return ", ".join(shown) + (", ..." if len(values) > _MAX_ROWS else "")


def _print_info(console: Console, info: dict[str, Any]) -> None:
    console.print(f"[bold]{info['path']}[/]: {info['format']}, {info['num_samples']:,} samples, "
                  f"{info['num_classes'] if info['num_classes'] is not None else 'unknown'} classes")
    table = Table(title="Parts")
    what = "Feature" if info["format"] == "csv" else "Pixel"
    for col in ("Part", "Samples", "Sample shape", "Dtype", f"{what} mean", f"{what} std"):
        table.add_column(col, justify="left" if col in ("Part", "Dtype") else "right", overflow="fold")
    key = "feature_stats" if info["format"] == "csv" else "pixel_stats"
    for p in info["parts"]:
        shape = str(p.get("sample_shape") or ", ".join(list(p.get("image_sizes", {}))[:3]) or "--")
        stats = p[key]
        scaled = "mean_scaled" in stats
        table.add_row(p["name"], f"{p['num_samples']:,}", shape, p.get("dtype", "--"),
                      _fmt(stats.get("mean_scaled" if scaled else "mean")),
                      _fmt(stats.get("std_scaled" if scaled else "std")))
    console.print(table)
    counts = info.get("class_counts")
    if counts:
        total = sum(counts.values()) or 1
        dist = Table(title="Class distribution (all parts)")
        dist.add_column("Class", overflow="fold")
        dist.add_column("Count", justify="right")
        dist.add_column("Share", justify="right")
        for name, n in counts.items():
            dist.add_row(name, f"{n:,}", f"{n / total:.1%}")
        console.print(dist)
    stats = info[key]
    if stats.get("channels"):
        what = "features" if key == "feature_stats" else "pixels"
        console.print(f"{what} (all parts): min {_fmt(stats['min'])}; max {_fmt(stats['max'])}; "
                      f"mean {_fmt(stats['mean'])}; std {_fmt(stats['std'])}")
        if "mean_scaled" in stats:
            console.print(f"scaled to [0, 1] (for Normalize): mean {_fmt(stats['mean_scaled'])}; "
                          f"std {_fmt(stats['std_scaled'])}")
    unreadable = sum(p.get("unreadable", 0) for p in info["parts"])
    if unreadable:
        console.print(f"[red]{unreadable} images could not be decoded[/]: run axonml data validate")


@data_app.command("info")
@handle_errors
@reflow_doc
def info(
    path: Path = PATH_ARG,
    format: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),  # noqa: A002 - the option's name
    label_column: str | None = typer.Option(None, "--label-column", help=_LABEL_HELP),
    as_json: bool = JSON_OPTION,
) -> None:
    """Counts, shapes, dtypes, class distribution and pixel (or feature) statistics of a dataset.

    Example: axonml data info data/mnist
    """
    report = describe(_open(path, format, label_column))
    if as_json:
        emit_json(report)
    else:
        _print_info(make_console(), report)


@data_app.command("validate")
@handle_errors
@reflow_doc
def validate_cmd(
    path: Path = PATH_ARG,
    format: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),  # noqa: A002 - the option's name
    label_column: str | None = typer.Option(None, "--label-column", help=_LABEL_HELP),
    max_imbalance: float = typer.Option(2.0, "--max-imbalance", min=1.0, help="Warn when the largest class has "
                                        "more than this many times the samples of the smallest."),
    no_duplicates: bool = typer.Option(False, "--no-duplicates", help="Skip the search for exact duplicates."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 on warnings too (imbalance, duplicates)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Check a dataset: corrupt or truncated files, bad labels, class imbalance, exact duplicate samples.

    Exit status: 0 when no error was found (warnings allowed unless --strict), 1 otherwise.
    """
    ds = _open(path, format, label_column, tolerant=True)
    report = validate(ds, max_imbalance=max_imbalance, duplicates=not no_duplicates)
    if as_json:
        emit_json(report)
    else:
        console = make_console()
        console.print(f"[bold]{report['path']}[/]: {report['format']}, {report['num_samples']:,} samples, "
                      f"{report['checked']:,} checked")
        if report["imbalance_ratio"] is not None:
            console.print(f"class imbalance (largest / smallest): {report['imbalance_ratio']:.2f}")
        for p in report["problems"]:
            colour = "red" if p["severity"] == "error" else "yellow"
            console.print(f"[{colour}]{p['severity']}[/] [{p['kind']}] {p['message']}")
            for group in (p.get("examples") or [])[:3]:
                console.print(f"    duplicates: {', '.join(group[:4])}")
        console.print(f"{report['errors']} errors, {report['warnings']} warnings")
    if report["errors"] or (strict and report["warnings"]):
        raise typer.Exit(1)


@data_app.command("split")
@handle_errors
@reflow_doc
def split(
    path: Path = PATH_ARG,
    output: Path = SPLIT_OUT,
    train: float = typer.Option(0.8, "--train", min=0.0, max=1.0, help="Share of samples for training."),
    val: float = typer.Option(0.1, "--val", min=0.0, max=1.0, help="Share for validation; test gets the rest."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same split."),
    stratify: bool = typer.Option(True, "--stratify/--no-stratify", help="Keep each class's proportions."),
    mode: str = typer.Option("index", "--mode", help="index: index files only; symlink or copy: also "
                             "<split>/<class>/ trees (image folders); copy: <split>.csv (CSV)."),
    format: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),  # noqa: A002 - the option's name
    label_column: str | None = typer.Option(None, "--label-column", help=_LABEL_HELP),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty folder, replacing an old split."),
    as_json: bool = typer.Option(False, "--json", help="Print split.json's content."),
) -> None:
    """Split a dataset into train/val/test, deterministically (stratified by class by default).

    Writes OUTPUT/split.json (source, seed, ratios, counts per split and class) and OUTPUT/train.txt,
    val.txt, test.txt: one sample per line, "<id><TAB><label index>", where <id> is <part>:<index> for
    IDX/CIFAR/CSV data (e.g. train:17, data_batch_2:5, iris.csv:3 = 4th data row) or the image path relative
    to the dataset folder. --mode symlink/copy also builds OUTPUT/<split>/<class>/ image trees; --mode copy
    on CSV writes OUTPUT/<split>.csv. Example: axonml data split data/mnist -o splits --train 0.8 --val 0.1
    """
    if train + val > 1 + 1e-9:
        raise typer.BadParameter(f"--train {train} + --val {val} is more than 1")
    if mode not in ("index", "symlink", "copy"):
        raise typer.BadParameter(f"--mode must be index, symlink or copy, got {mode!r}")
    ds = _open(path, format, label_column)
    manifest = split_dataset(ds, output, train=train, val=val, seed=seed, stratify=stratify, mode=mode,
                             overwrite=force)
    if as_json:
        emit_json(manifest)
        return
    counts = manifest["counts"]
    typer.echo(f"{path} -> {output}: train {counts['train']:,}, val {counts['val']:,}, test {counts['test']:,} "
               f"(seed {seed}, {'stratified' if manifest['stratified'] else 'not stratified'}, mode {mode})")
