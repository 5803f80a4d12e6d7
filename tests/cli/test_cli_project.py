"""``axonml new|init|scaffold``: the generated projects are `axonml train` configs, and train as generated."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from axonml.cli._app import CommandError
from axonml.cli._train_config import TrainConfig, load_config, tomllib
from axonml.cli.main import app
from axonml.io import CheckpointManager, ModelArchive, load
from axonml.vision.models import list_models

NONDIFF_NAMES: list[str] = []

TEMPLATES = ("mlp", "cnn", "resnet", "transformer")
MODELS = {"mlp": "mlp", "cnn": "simple_cnn", "resnet": "resnet18", "transformer": "vit_tiny"}
# grey digits, repeated to RGB for the models built for it; SyntheticCIFAR is 32x32 RGB
SHAPES = {"mlp": [1, 28, 28], "cnn": [1, 28, 28], "resnet": [3, 32, 32], "transformer": [3, 28, 28]}
FILES = {"axonml.toml", "train.py", "README.md", ".gitignore", "data/.gitkeep"}
RUN_FILES = {"metrics.jsonl", "model.axonml", "config.toml"}
CLI = [sys.executable, "-m", "axonml.cli.main"]
# one BLAS thread per training process: several of them share the CI machine's cores
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# small runs: ResNet-18 takes about 40 ms per sample on one CPU core
SMALL = {"mlp": ("--limit", "64"), "cnn": ("--limit", "64"), "resnet": ("--limit", "12", "--batch-size", "6"),
         "transformer": ("--limit", "64")}
TWO = ("--epochs", "2", "--limit", "128", "--batch-size", "32")
QUICK = {"mlp": TWO, "cnn": TWO, "resnet": ("--epochs", "1", *SMALL["resnet"]), "transformer": TWO}


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def new_project(path: Path, template: str) -> Path:
    result = invoke("new", path, "--template", template)
    assert result.exit_code == 0, result.output
    return path


def epochs_of(project: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (project / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == "epoch"]


def train_py(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=project, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def edit_toml(project: Path, old: str, new: str) -> None:
    toml = project / "axonml.toml"
    text = toml.read_text()
    assert old in text, old
    toml.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str]]:
    """Each template generated with `axonml new`, then its train.py run as generated, the four in parallel."""
    root = tmp_path_factory.mktemp("projects")
    procs = {t: train_py(new_project(root / t, t), *QUICK[t]) for t in TEMPLATES}
    out = {}
    for t, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[t] = (root / t, p.returncode, stdout + stderr)
    return out


# ----- one schema: the generated axonml.toml is an `axonml train` config ----------------------------------
@pytest.mark.parametrize("template", TEMPLATES)
def test_the_generated_toml_has_exactly_the_train_schema(tmp_path: Path, template: str) -> None:
    project = new_project(tmp_path / "p", template)
    raw = tomllib.loads((project / "axonml.toml").read_text())
    schema = TrainConfig()
    assert set(raw) == {f.name for f in dataclasses.fields(schema)}  # every table, no other
    for table, values in raw.items():
        assert set(values) == {f.name for f in dataclasses.fields(getattr(schema, table))}, table  # every key
    cfg = load_config(project / "axonml.toml")
    assert cfg.model.name == MODELS[template] and cfg.model.name in list_models()
    assert (cfg.project.name, cfg.project.template) == ("p", template)
    assert cfg.train.output == str(project.resolve()) and cfg.data.root == str((project / "data").resolve())


@pytest.mark.parametrize("template", TEMPLATES)
def test_axonml_train_takes_each_generated_project_as_is(tmp_path: Path, template: str) -> None:
    project = tmp_path / "p"
    assert invoke("scaffold", project, "--template", template).exit_code == 0
    result = invoke("train", project / "axonml.toml", "--epochs", "1", *SMALL[template], "-q", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and Path(summary["output"]) == project.resolve()
    assert [r["epoch"] for r in epochs_of(project)] == [1]  # the run's files land in the project
    assert {p.name for p in project.iterdir()} >= RUN_FILES | FILES - {"data/.gitkeep"}
    manager = CheckpointManager(project / "checkpoints")
    assert manager.latest is not None and load(manager.latest)["epoch"] == 1
    assert ModelArchive.read_manifest(project / "model.axonml")["metadata"]["model"] == MODELS[template]
    again = invoke("train", project / "axonml.toml", "--epochs", "1")
    assert again.exit_code == 1 and "already holds a run" in again.stderr  # never mixes two runs


def test_axonml_train_on_a_generated_project_in_a_subprocess(tmp_path: Path) -> None:
    project = new_project(tmp_path / "digits", "mlp")
    # a relative path from another folder: the project's own paths stay relative to its axonml.toml
    r = subprocess.run([*CLI, "train", "digits/axonml.toml", "--epochs", "1", "--limit", "64"], cwd=tmp_path,
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "training mlp on synthetic-mnist" in r.stderr and "done: 1 epochs" in r.stderr
    assert [r["epoch"] for r in epochs_of(project)] == [1] and (project / "model.axonml").is_file()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "metrics.jsonl").exists()
    graded = invoke("eval", project, "--limit", "32", "--json")  # the project is a run folder for eval
    assert graded.exit_code == 0 and json.loads(graded.stdout)["samples"] == 32


def test_an_unknown_key_is_one_clear_error_from_both_loops(tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", "cnn")
    edit_toml(project, "batch_size = 64\n", "batch_size = 64\nshuffle = true\n")
    result = invoke("train", project / "axonml.toml", "--epochs", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "unknown key 'shuffle'" in result.stderr and "data" in result.stderr
    r = subprocess.run([sys.executable, "train.py"], cwd=project, capture_output=True, text=True, env=ENV,
                       timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "unknown key 'shuffle'" in r.stderr, r.stderr
    edit_toml(project, "shuffle = true\n", "[extras]\n")
    result = invoke("train", project / "axonml.toml")
    assert result.exit_code == 1 and "unknown table [extras]" in result.stderr


# ----- train.py as generated ----------------------------------------------------------------------------
@pytest.mark.parametrize("template", TEMPLATES)
def test_each_generated_train_py_trains_as_generated(trained: dict[str, tuple[Path, int, str]],
                                                     template: str) -> None:
    project, code, output = trained[template]
    assert code == 0, output
    rows = epochs_of(project)
    epochs = int(QUICK[template][1])
    assert [r["epoch"] for r in rows] == list(range(1, epochs + 1))
    if epochs > 1:
        assert rows[-1]["train_loss"] < rows[0]["train_loss"], rows  # it learns
    manager = CheckpointManager(project / "checkpoints", metric="val_acc", mode="max")
    assert [c.epoch for c in manager.checkpoints()] == list(range(1, epochs + 1))
    state = load(manager.latest)
    assert state["epoch"] == epochs and state["model"] and state["optimizer"]
    meta = ModelArchive.read_manifest(project / "model.axonml")["metadata"]  # what eval/predict/inspect need
    assert meta["model"] == MODELS[template] and len(meta["classes"]) == 10
    assert meta["input_shape"] == SHAPES[template]
    assert load_config(project / "config.toml").model.name == MODELS[template]  # the resolved settings
    assert "model saved to" in output


def test_generated_files_and_python_style(trained: dict[str, tuple[Path, int, str]]) -> None:
    for t in TEMPLATES:
        project = trained[t][0]
        assert {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()} >= FILES
        assert (project / "checkpoints").is_dir()
        assert f'template = "{t}"' in (project / "axonml.toml").read_text()
        ignored = (project / ".gitignore").read_text().splitlines()
        assert {"checkpoints/", "metrics.jsonl", "model.axonml", "config.toml"} <= set(ignored)
        assert f"# {t}" in (project / "README.md").read_text()
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    r = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--line-length", "120",
                        "--select", "E,F,W,B,UP,SIM,C4", str(trained["mlp"][0] / "train.py")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def run_train_py(project: Path, *args: str) -> str:
    """``python train.py ARGS`` in this process (its ``main``), for speed; returns what it printed."""
    main = runpy.run_path(str(project / "train.py"), run_name="train_py")["main"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(args)) == 0
    return out.getvalue()


def test_train_py_resumes_exactly_and_refuses_to_mix_runs(tmp_path: Path) -> None:
    for name in ("straight", "resumed"):  # a constant learning rate: the same whatever --epochs says
        edit_toml(new_project(tmp_path / name, "mlp"), 'name = "cosine"', 'name = "none"')
    run_train_py(tmp_path / "straight", "--epochs", "3", "--limit", "64")
    run_train_py(tmp_path / "resumed", "--epochs", "2", "--limit", "64")
    with pytest.raises(CommandError, match="--resume to continue it, or --fresh"):  # an earlier run, no flag
        run_train_py(tmp_path / "resumed", "--epochs", "3", "--limit", "64")
    out = run_train_py(tmp_path / "resumed", "--epochs", "3", "--limit", "64", "--resume")
    assert "resumed from checkpoint-0000000002.ckpt" in out and "epoch 1/3" not in out and "epoch 3/3" in out
    a, b = epochs_of(tmp_path / "straight"), epochs_of(tmp_path / "resumed")
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert a[-1][key] == b[-1][key], key  # bit for bit
    a_ckpt, b_ckpt = (CheckpointManager(tmp_path / n / "checkpoints").latest for n in ("straight", "resumed"))
    assert all((load(a_ckpt)["model"][k] == v).all().item() for k, v in load(b_ckpt)["model"].items())
    run_train_py(tmp_path / "resumed", "--epochs", "1", "--limit", "64", "--fresh")
    assert [r["epoch"] for r in epochs_of(tmp_path / "resumed")] == [1]
    # a run of `axonml train` is continued by `axonml resume`, and train.py says so
    assert invoke("train", tmp_path / "straight" / "axonml.toml", "--epochs", "1", "--limit", "64", "--force",
                  "-q").exit_code == 0
    with pytest.raises(CommandError, match=r"was not written by train\.py; continue it with `axonml resume"):
        run_train_py(tmp_path / "straight", "--resume")


def test_a_real_dataset_from_shared_data(shared_data: Path, tmp_path: Path) -> None:
    project = new_project(tmp_path / "digits", "cnn")
    edit_toml(project, 'dataset = "synthetic-mnist"', 'dataset = "mnist"')
    edit_toml(project, 'root = "data"', f'root = "{shared_data / "mnist"}"')
    p = train_py(project, "--epochs", "2", "--limit", "512")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    rows = epochs_of(project)
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[1]["val_acc"] > 0.3  # real handwritten digits, 10 classes
    assert "461 training samples on mnist" in out  # 512 less the 10% held out


def test_a_missing_real_dataset_is_one_clear_error(tmp_path: Path) -> None:
    project = new_project(tmp_path / "p", "mlp")
    edit_toml(project, 'dataset = "synthetic-mnist"', 'dataset = "fashion-mnist"')
    edit_toml(project, "download = true", "download = false")
    result = invoke("train", project / "axonml.toml", "--epochs", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: dataset fashion-mnist") and result.stderr.count("\n") == 1
    assert str(project / "data") in result.stderr


# ----- the commands themselves -------------------------------------------------------------------------
def test_init_keeps_existing_files_unless_forced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("mine\n")
    runner = CliRunner()
    r = runner.invoke(app, ["init", "--template", "mlp"])
    assert r.exit_code == 1
    assert "README.md" in r.stderr and "--force" in r.stderr and "nothing was written" in r.stderr
    assert (tmp_path / "README.md").read_text() == "mine\n" and not (tmp_path / "axonml.toml").exists()
    r = runner.invoke(app, ["init", "--template", "mlp", "--force", "--name", "digits"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "README.md").read_text().startswith("# digits")
    assert load_config(tmp_path / "axonml.toml").project.name == "digits"


def test_new_refuses_a_non_empty_folder_and_bad_usage_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("x")
    r = runner.invoke(app, ["new", str(tmp_path / "taken")])
    assert r.exit_code == 1 and "not empty" in r.stderr
    assert runner.invoke(app, ["new", str(tmp_path / "x"), "--template", "gan"]).exit_code == 2
    assert runner.invoke(app, ["new", str(tmp_path / "bad name")]).exit_code == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "bad name").exists()
    r = runner.invoke(app, ["new", str(tmp_path / "taken"), "--force", "-t", "transformer"])
    assert r.exit_code == 0 and (tmp_path / "taken" / "notes.txt").exists()
    assert load_config(tmp_path / "taken" / "axonml.toml").model.name == "vit_tiny"


def test_scaffold_json_and_template_choice(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "proj"
    r = CliRunner().invoke(app, ["scaffold", str(target), "-t", "resnet", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["template"] == "resnet" and set(out["files"]) == FILES and Path(out["path"]) == target.resolve()
    assert out["folders"] == ["data", "checkpoints"] and (target / "checkpoints").is_dir()
    cfg = load_config(target / "axonml.toml")
    assert (cfg.model.name, cfg.data.dataset) == ("resnet18", "synthetic-cifar")
    assert CliRunner().invoke(app, ["scaffold", str(target)]).exit_code == 1  # files exist now


def test_commands_in_a_subprocess(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "new", "alpha", "-t", "transformer"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "cd alpha && python train.py" in r.stdout, r.stderr
    assert "axonml train axonml.toml" in r.stdout
    (tmp_path / "beta").mkdir()
    r = subprocess.run([*CLI, "init", "--json"], cwd=tmp_path / "beta", capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["template"] == "cnn", r.stderr
    assert 'name = "beta"' in (tmp_path / "beta" / "axonml.toml").read_text()
    r = subprocess.run([*CLI, "init"], cwd=tmp_path / "beta", capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1
    r = subprocess.run([*CLI, "scaffold", "gamma", "-t", "mlp"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "gamma" / "train.py").is_file()
    r = CliRunner().invoke(app, ["scaffold", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "--template" in r.stdout and "checkpoints" in r.stdout
