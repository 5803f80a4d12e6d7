"""``axonml eval``: loss, accuracy, top-k, per-class precision/recall/F1 and the confusion matrix of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ._app import CommandError, app, emit_json, handle_errors
from ._train_data import load_data
from ._train_eval import classification_metrics, run_inference
from ._train_models import LoadedModel, load_for_inference
from ._train_setup import resolve_device, stdout_console

_MAX_MATRIX = 20  # classes beyond which the confusion matrix is left to --json
MODEL_ARG = typer.Argument(..., help="A .axonml archive, a checkpoint (.ckpt), or a run folder.")


def evaluate_model(loaded: LoadedModel, *, dataset: str | None, data_root: str | None, split: str, limit: int,
                   batch_size: int, device: str, workers: int, top_k: int) -> dict[str, Any]:
    """The metrics of ``loaded`` on a split of ``dataset`` (default: the dataset it was trained on)."""
    meta, spec = loaded.meta, loaded.spec
    name = dataset or meta.get("dataset")
    if not name:
        raise CommandError("the model does not record its dataset; pass --dataset")
    root = data_root if data_root is not None else (meta.get("root", "") if name == meta.get("dataset") else "")
    if root and not Path(root).exists():
        root = ""  # the training run's folder is gone (another machine): look for the data again
    image_size = spec.shape[1]
    bundle = load_data(name, root, model=str(meta.get("model", "")), val_split=0.0, limit=limit, seed=0,
                       image_size=image_size, split=split, norm=(spec.mean, spec.std))
    got = bundle.spec
    if got.shape[1:] != spec.shape[1:] or got.data_channels > spec.shape[0]:
        raise CommandError(f"{name} gives {got.data_channels}x{got.shape[1]}x{got.shape[2]} images; the model "
                           f"takes {spec.shape[0]}x{spec.shape[1]}x{spec.shape[2]}")
    if len(got.classes) != len(spec.classes):
        raise CommandError(f"{name} has {len(got.classes)} classes; the model predicts {len(spec.classes)}")
    dev = resolve_device(device)
    loaded.model.to(dev)
    logits, targets = run_inference(loaded.model, bundle.val, prepare=spec.prepare if bundle.pixels else None,
                                    device=dev, batch_size=batch_size, workers=workers)
    metrics = classification_metrics(logits, targets, spec.classes, top_k=top_k)
    return {"model": str(loaded.path), "source": loaded.source, "dataset": name, "split": split,
            "data": bundle.val_source, **metrics}


def _print_report(report: dict[str, Any], console: Console) -> None:
    k = report["top_k"]
    console.print(f"{report['model']} on {report['dataset']}, {report['data']}", markup=False, highlight=False)
    summary = Table(show_header=False)
    rows = (("samples", f"{report['samples']}"), ("loss", f"{report['loss']:.4f}"),
            ("accuracy", f"{report['accuracy']:.4f}"), (f"top-{k} accuracy", f"{report[f'top{k}_accuracy']:.4f}"),
            ("macro F1", f"{report['macro']['f1']:.4f}"))
    for key, value in rows:
        summary.add_row(key, value)
    console.print(summary)
    per = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "support"):
        per.add_column(col, justify="left" if col == "class" else "right")
    for row in report["per_class"]:
        per.add_row(row["class"], f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1']:.4f}",
                    str(row["support"]))
    per.add_section()
    for avg in ("macro", "weighted"):
        m = report[avg]
        per.add_row(f"{avg} avg", f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
                    str(report["samples"]))
    console.print(per)
    matrix = report["confusion_matrix"]
    if len(matrix) > _MAX_MATRIX:
        console.print(f"confusion matrix: {len(matrix)} classes, see --json")
        return
    cm = Table(title="confusion matrix (rows: true class, columns: predicted)")
    cm.add_column("true \\ pred")
    for i in range(len(matrix)):
        cm.add_column(str(i), justify="right")
    for i, row in enumerate(matrix):
        cm.add_row(f"{i}: {report['per_class'][i]['class']}", *(str(v) for v in row))
    console.print(cm)


@app.command("eval")
@handle_errors
def eval_command(
    model: Path = MODEL_ARG,
    dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset to evaluate on (default: the "
                                       "model's own): mnist, fashion-mnist, cifar10, cifar100, synthetic-mnist, "
                                       "synthetic-cifar or imagefolder:PATH."),
    data_root: str | None = typer.Option(None, "--data-root", help="Folder holding the dataset's files."),
    split: str = typer.Option("test", "--split", help="test or train."),
    limit: int = typer.Option(0, "--limit", help="Evaluate the first N samples only (0: all)."),
    batch_size: int = typer.Option(256, "--batch-size", "-b", help="Batch size."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    top_k: int = typer.Option(5, "--top-k", help="k of the top-k accuracy."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
) -> None:
    """Evaluate a classifier: loss, accuracy, top-k, per-class precision/recall/F1 (and macro), confusion matrix."""
    if split not in ("test", "train"):
        raise CommandError(f"--split must be test or train, got {split!r}")
    if batch_size < 1 or top_k < 1 or limit < 0 or workers < 0:
        raise CommandError("--batch-size and --top-k must be >= 1, --limit and --workers >= 0")
    loaded = load_for_inference(model)
    report = evaluate_model(loaded, dataset=dataset, data_root=data_root, split=split, limit=limit,
                            batch_size=batch_size, device=device, workers=workers, top_k=top_k)
    if as_json:
        emit_json(report)
    else:
        _print_report(report, stdout_console())
