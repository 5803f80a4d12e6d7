"""``axonml new``, ``axonml init``, ``axonml scaffold``: generate a training project that trains as generated.

A project is ``axonml.toml`` (every setting, in the ``axonml train`` schema of
docs/cli-train.md, so ``axonml train axonml.toml`` takes it as it is), ``train.py``
(the same run as a plain loop to edit: axonml's data, nn, optim, amp and
io.CheckpointManager, with --resume), ``README.md``, ``.gitignore`` and the folders
``data/`` and ``checkpoints/``. The templates pick the model and its size:

* ``mlp``: ``mlp`` (a multilayer perceptron) on SyntheticMNIST;
* ``cnn``: ``simple_cnn`` (conv blocks and a two-layer head) on SyntheticMNIST;
* ``resnet``: ``resnet18`` (with the small-image stem) on SyntheticCIFAR;
* ``transformer``: ``vit_tiny`` shrunk to 4 layers of width 64 (a Vision Transformer) on SyntheticMNIST.

Each trains as generated, offline; ``[data] dataset`` switches to real data (MNIST,
CIFAR-10, an image folder, ...). The files come from ``templates/`` beside this
module (package data). Existing files are never overwritten unless ``--force`` is given.
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
    """What differs between templates: the README's words and the defaults of axonml.toml."""

    description: str
    model_summary: str
    dataset: str  # [data] dataset
    limit: int  # [data] limit: keeps the larger models' first run short on a CPU
    lr: str  # [optimizer] lr
    epochs: int  # [train] epochs


TEMPLATES: dict[str, ProjectTemplate] = {
    "mlp": ProjectTemplate("a multilayer perceptron classifying images.",
                           "`mlp`: a multilayer perceptron on the flattened image", "synthetic-mnist", 0, "0.001", 5),
    "cnn": ProjectTemplate("a convolutional network classifying images.",
                           "`simple_cnn`: conv blocks (conv, BatchNorm, ReLU, max-pool) and a two-layer head",
                           "synthetic-mnist", 0, "0.001", 5),
    "resnet": ProjectTemplate("a residual network classifying images.",
                              "`resnet18`: a ResNet-18, with the 3x3 stem of small images", "synthetic-cifar", 1000,
                              "0.001", 5),
    "transformer": ProjectTemplate("a Vision Transformer classifying images.",
                                   "`vit_tiny` made small: 4x4 patches, 4 encoder layers of width 64, 4 heads",
                                   "synthetic-mnist", 0, "0.001", 5),
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
              "description": t.description, "model_summary": t.model_summary, "dataset": t.dataset,
              "limit": str(t.limit), "lr": t.lr, "epochs": str(t.epochs)}
    toml_parts = ["common/header.toml.tmpl", f"{template}/model.toml.tmpl", "common/data.toml.tmpl",
                  "common/training.toml.tmpl"]
    return {
        "axonml.toml": "\n".join(Template(_read(p)).substitute(values).strip("\n") + "\n" for p in toml_parts),
        "train.py": _read("common/train.py.tmpl"),
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
    typer.echo(f"next: {step}   (or `axonml train axonml.toml`; `--epochs 1 --limit 256` for a quick check)")


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
    """Generate axonml.toml, train.py, data/, checkpoints/, .gitignore and README.md in DIR."""
    files = write_project(directory, template.value, _project_name(name, directory), "scaffold", force)
    _report(directory, template.value, files, as_json, cd=directory.resolve() != Path.cwd())
