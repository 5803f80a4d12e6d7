"""``axonml new``, ``axonml init``, ``axonml scaffold``: generate a training project that trains as generated.

A project is ``axonml.toml`` (every setting), ``train.py`` (the loop: axonml's nn,
optim, data and io.CheckpointManager, with --resume), ``model.py`` (the network),
``dataset.py`` (the data), ``README.md``, ``.gitignore`` and the folders ``data/``
and ``checkpoints/``. Templates:

* ``mlp``, ``cnn``, ``resnet``: image classifiers on axonml.vision.datasets
  (SyntheticMNIST / SyntheticCIFAR by default, real MNIST, Fashion-MNIST or CIFAR-10
  by changing ``[data] dataset``);
* ``transformer``: a TransformerEncoder classifier on a synthetic sequence task with
  a rule to learn (the label is the sequence's majority token).

The files come from ``templates/`` beside this module (package data). Existing
files are never overwritten unless ``--force`` is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from pathlib import Path
from string import Template

import typer

from .._version import __version__
from ._app import app, emit_json, fail, handle_errors

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
FOLDERS = ("data", "checkpoints")


class TemplateName(str, Enum):
    """The project templates."""

    mlp = "mlp"
    cnn = "cnn"
    resnet = "resnet"
    transformer = "transformer"


@dataclass(frozen=True)
class ProjectTemplate:
    """What differs between templates: the model, the data kind, defaults and the README's words."""

    description: str
    model_summary: str
    data_kind: str  # "image" or "sequence": which dataset.py and [data] table
    dataset: str  # image templates: the default [data] dataset
    lr: str
    epochs: str

    @property
    def data_summary(self) -> str:
        if self.data_kind == "sequence":
            return "a synthetic sequence task, the label is the majority token (`[data]` sets its sizes)"
        return "an axonml.vision dataset as normalized tensors (`[data] dataset` picks it)"

    @property
    def data_hint(self) -> str:
        if self.data_kind == "sequence":
            return "Put your own token sequences in `dataset.py`: `load_data` returns (N, T) int64 ids and labels."
        return ('For real data set `dataset = "mnist"` (or `fashion-mnist`, `cifar10`) in `axonml.toml` and put '
                "its files in `data/` (or set `download = true`).")


TEMPLATES: dict[str, ProjectTemplate] = {
    "mlp": ProjectTemplate("a multilayer perceptron classifying images.",
                           "a multilayer perceptron on flattened images", "image", "synthetic-mnist", "0.001", "5"),
    "cnn": ProjectTemplate("a convolutional network classifying images.",
                           "conv blocks (conv, BatchNorm, ReLU, max-pool) and a two-layer classifier", "image",
                           "synthetic-mnist", "0.001", "5"),
    "resnet": ProjectTemplate("a small residual network classifying images.",
                              "a small ResNet (basic blocks, global average pooling)", "image", "synthetic-cifar",
                              "0.001", "5"),
    "transformer": ProjectTemplate("a Transformer encoder classifying token sequences.",
                                   "a TransformerEncoder with learned positions and mean pooling", "sequence", "",
                                   "0.003", "10"),
}


def _read(path: str) -> str:
    """The text of ``templates/<path>`` (package data)."""
    node = resources.files("axonml.cli") / "templates"
    for part in path.split("/"):
        node = node / part
    return node.read_text(encoding="utf-8")


def render_project(template: str, name: str, command: str) -> dict[str, str]:
    """Every file of a new project: relative path -> text."""
    t = TEMPLATES[template]
    values = {"name": name, "template": template, "version": __version__, "command": command,
              "description": t.description, "model_summary": t.model_summary, "data_summary": t.data_summary,
              "data_hint": t.data_hint, "dataset": t.dataset, "lr": t.lr, "epochs": t.epochs}
    data_toml = "image/data.toml.tmpl" if t.data_kind == "image" else "sequence/data.toml.tmpl"
    toml_parts = ["common/header.toml.tmpl", f"{template}/model.toml.tmpl", data_toml, "common/training.toml.tmpl"]
    return {
        "axonml.toml": "\n".join(Template(_read(p)).substitute(values).strip("\n") + "\n" for p in toml_parts),
        "train.py": _read("common/train.py.tmpl"),
        "model.py": _read(f"{template}/model.py.tmpl"),
        "dataset.py": _read(f"{t.data_kind}/dataset.py.tmpl"),
        "README.md": Template(_read("common/README.md.tmpl")).substitute(values),
        ".gitignore": _read("common/gitignore.tmpl"),
        "data/.gitkeep": "",
    }


def write_project(target: Path, template: str, name: str, command: str, force: bool) -> list[str]:
    """Write the project into ``target`` (created if missing); refuses to overwrite files unless ``force``."""
    files = render_project(template, name, command)
    if target.exists() and not target.is_dir():
        fail(f"{target} exists and is not a folder")
    clash = [rel for rel in files if (target / rel).exists()]
    not_dirs = [d for d in FOLDERS if (target / d).exists() and not (target / d).is_dir()]
    if not_dirs:
        fail(f"{target}: {', '.join(not_dirs)} exist(s) but must be folders")
    if clash and not force:
        fail(f"{target} already has {', '.join(clash)}; nothing was written (pass --force to overwrite them)")
    for d in FOLDERS:
        (target / d).mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (target / rel).write_text(text, encoding="utf-8")
    return list(files)


def _project_name(name: str | None, folder: Path) -> str:
    if name is not None:
        if not NAME_RE.fullmatch(name):
            raise typer.BadParameter(f"{name!r}: a project name uses letters, digits, '_', '.' and '-'",
                                     param_hint="--name")
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name).strip("-.")
    return cleaned or "project"


def _report(target: Path, template: str, files: list[str], as_json: bool, cd: bool) -> None:
    if as_json:
        emit_json({"path": str(target.resolve()), "template": template, "files": files, "folders": list(FOLDERS)})
        return
    typer.echo(f"created a {template} project in {target}: {', '.join(f for f in files if '/' not in f)}, "
               f"{'/, '.join(FOLDERS)}/")
    step = f"cd {target} && python train.py" if cd else "python train.py"
    typer.echo(f"next: {step}   (or `python train.py --epochs 1 --limit 256` for a quick check)")


TEMPLATE_OPT = typer.Option(TemplateName.cnn, "--template", "-t", help="The project template.")
FORCE_OPT = typer.Option(False, "--force", "-f", help="Overwrite files that already exist.")
NAME_OPT = typer.Option(None, "--name", help="Project name (default: the folder's name).")
JSON_OPT = typer.Option(False, "--json", help="Print the created files as JSON.")
NEW_ARG = typer.Argument(..., help="Folder to create (its last part is the project name).")
DIR_ARG = typer.Argument(Path("."), help="Folder to generate into (created if missing).")


@app.command("new")
@handle_errors
def new(name: str = NEW_ARG,
        template: TemplateName = TEMPLATE_OPT, force: bool = FORCE_OPT, as_json: bool = JSON_OPT) -> None:
    """Create a new folder NAME holding a training project that trains as generated."""
    target = Path(name)
    if not NAME_RE.fullmatch(target.name):
        raise typer.BadParameter(f"{target.name!r}: a project name uses letters, digits, '_', '.' and '-'",
                                 param_hint="NAME")
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not force:
        fail(f"{target} already exists and is not empty; run `axonml init` inside it, or pass --force")
    files = write_project(target, template.value, target.name, "new", force)
    _report(target, template.value, files, as_json, cd=True)


@app.command("init")
@handle_errors
def init(template: TemplateName = TEMPLATE_OPT, name: str | None = NAME_OPT, force: bool = FORCE_OPT,
         as_json: bool = JSON_OPT) -> None:
    """Turn the current folder into a training project (existing files are kept unless --force)."""
    target = Path.cwd()
    files = write_project(target, template.value, _project_name(name, target), "init", force)
    _report(Path("."), template.value, files, as_json, cd=False)


@app.command("scaffold")
@handle_errors
def scaffold(directory: Path = DIR_ARG,
             template: TemplateName = TEMPLATE_OPT, name: str | None = NAME_OPT, force: bool = FORCE_OPT,
             as_json: bool = JSON_OPT) -> None:
    """Generate axonml.toml, train.py, model.py, dataset.py, data/, checkpoints/, .gitignore and README.md in DIR."""
    files = write_project(directory, template.value, _project_name(name, directory), "scaffold", force)
    _report(directory, template.value, files, as_json, cd=directory.resolve() != Path.cwd())
