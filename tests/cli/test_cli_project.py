"""``axonml new|init|scaffold``: the generated projects exist, refuse to clobber files, and train as generated."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from axonml.cli.main import app
from axonml.io import CheckpointManager, load

NONDIFF_NAMES: list[str] = []

TEMPLATES = ("mlp", "cnn", "resnet", "transformer")
FILES = {"axonml.toml", "train.py", "model.py", "dataset.py", "README.md", ".gitignore", "data/.gitkeep"}
CLI = [sys.executable, "-m", "axonml.cli.main"]
# one BLAS thread per training process: four of them share the CI machine's cores
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _metrics(project: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in (project / "checkpoints" / "metrics.jsonl").read_text().splitlines()]


def _train(project: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=project, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, int, str]]:
    """Each template generated with `axonml new` and trained as generated (2 epochs, 256 samples), in parallel."""
    root = tmp_path_factory.mktemp("projects")
    runner = CliRunner()
    procs = {}
    for t in TEMPLATES:
        result = runner.invoke(app, ["new", str(root / t), "--template", t])
        assert result.exit_code == 0, result.output
        procs[t] = _train(root / t, "--epochs", "2", "--limit", "256")
    out = {}
    for t, p in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[t] = (root / t, p.returncode, stdout + stderr)
    return out


@pytest.mark.parametrize("template", TEMPLATES)
def test_each_template_trains_as_generated(trained: dict[str, tuple[Path, int, str]], template: str) -> None:
    project, code, output = trained[template]
    assert code == 0, output
    rows = _metrics(project)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train_loss"] < rows[0]["train_loss"], rows  # it learns
    manager = CheckpointManager(project / "checkpoints", metric="val_loss")
    assert [c.epoch for c in manager.checkpoints()] == [1, 2]
    state = load(manager.latest)
    assert state["epoch"] == 2 and state["model"] and state["optimizer"]
    assert manager.best is not None and "best checkpoint" in output


def test_the_transformer_learns_the_majority_rule(trained: dict[str, tuple[Path, int, str]]) -> None:
    project, code, output = trained["transformer"]
    assert code == 0, output
    assert _metrics(project)[-1]["val_acc"] > 0.35  # chance is about 1/8 over the 8 tokens


def test_generated_files_and_python_style(trained: dict[str, tuple[Path, int, str]]) -> None:
    for t in TEMPLATES:
        project = trained[t][0]
        assert {str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()} >= FILES
        assert (project / "checkpoints").is_dir()
        toml = (project / "axonml.toml").read_text()
        assert f'name = "{t}"' in toml and f'template = "{t}"' in toml
        assert "checkpoints/" in (project / ".gitignore").read_text()
        assert f"# {t}" in (project / "README.md").read_text()
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    files = [str(trained[t][0] / f) for t in TEMPLATES for f in ("train.py", "model.py", "dataset.py")]
    r = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--line-length", "120",
                        "--select", "E,F,W,B,UP,SIM,C4", *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_resume_continues_exactly_and_a_new_run_refuses_old_checkpoints(tmp_path: Path) -> None:
    runner = CliRunner()
    for name in ("straight", "resumed"):
        assert runner.invoke(app, ["new", str(tmp_path / name), "-t", "mlp"]).exit_code == 0
        toml = tmp_path / name / "axonml.toml"
        toml.write_text(toml.read_text().replace('name = "cosine"', 'name = "none"'))  # same lr whatever --epochs
    straight = _train(tmp_path / "straight", "--epochs", "3", "--limit", "128")
    first = _train(tmp_path / "resumed", "--epochs", "2", "--limit", "128")
    assert first.wait(120) == 0, first.communicate()
    again = _train(tmp_path / "resumed", "--epochs", "3", "--limit", "128")  # old checkpoints, no flag
    out, err = again.communicate(timeout=120)
    assert again.returncode == 1 and "--resume" in err and "--fresh" in err
    resumed = _train(tmp_path / "resumed", "--epochs", "3", "--limit", "128", "--resume")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert "resumed from checkpoint-0000000002.ckpt" in out and "epoch 1/3" not in out
    assert straight.wait(120) == 0
    a, b = _metrics(tmp_path / "straight"), _metrics(tmp_path / "resumed")
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        assert a[-1][key] == b[-1][key], key  # bit for bit
    fresh = _train(tmp_path / "resumed", "--epochs", "1", "--limit", "64", "--fresh")
    assert fresh.wait(120) == 0
    assert [r["epoch"] for r in _metrics(tmp_path / "resumed")] == [1]


def test_a_real_dataset_from_shared_data(shared_data: Path, tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["new", str(tmp_path / "digits"), "-t", "cnn"]).exit_code == 0
    toml = tmp_path / "digits" / "axonml.toml"
    text = toml.read_text().replace('dataset = "synthetic-mnist"', 'dataset = "mnist"')
    toml.write_text(text.replace('root = "data"', f'root = "{shared_data / "mnist"}"'))
    p = _train(tmp_path / "digits", "--epochs", "2", "--limit", "512")
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    rows = _metrics(tmp_path / "digits")
    assert rows[1]["train_loss"] < rows[0]["train_loss"]
    assert rows[1]["val_acc"] > 0.3  # real handwritten digits, 10 classes
    assert "512 training and 512 validation samples" in out


def test_a_missing_real_dataset_is_one_clear_error(tmp_path: Path) -> None:
    assert CliRunner().invoke(app, ["new", str(tmp_path / "p"), "-t", "mlp"]).exit_code == 0
    toml = tmp_path / "p" / "axonml.toml"
    toml.write_text(toml.read_text().replace('dataset = "synthetic-mnist"', 'dataset = "fashion-mnist"'))
    r = subprocess.run([sys.executable, "train.py", "--epochs", "1"], cwd=tmp_path / "p", capture_output=True,
                       text=True, env=ENV, timeout=120)
    assert r.returncode == 1
    assert r.stderr.startswith("error: ") and "not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


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
    assert 'name = "digits"' in (tmp_path / "axonml.toml").read_text()


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
    assert "TransformerClassifier" in (tmp_path / "taken" / "model.py").read_text()


def test_scaffold_json_and_template_choice(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "proj"
    r = CliRunner().invoke(app, ["scaffold", str(target), "-t", "resnet", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["template"] == "resnet" and set(out["files"]) == FILES and Path(out["path"]) == target.resolve()
    assert "class ResNet" in (target / "model.py").read_text()
    assert 'dataset = "synthetic-cifar"' in (target / "axonml.toml").read_text()
    assert CliRunner().invoke(app, ["scaffold", str(target)]).exit_code == 1  # files exist now


def test_commands_in_a_subprocess(tmp_path: Path) -> None:
    r = subprocess.run([*CLI, "new", "alpha", "-t", "transformer"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "cd alpha && python train.py" in r.stdout, r.stderr
    (tmp_path / "beta").mkdir()
    r = subprocess.run([*CLI, "init", "--json"], cwd=tmp_path / "beta", capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["template"] == "cnn", r.stderr
    assert 'name = "beta"' in (tmp_path / "beta" / "axonml.toml").read_text()
    r = subprocess.run([*CLI, "init"], cwd=tmp_path / "beta", capture_output=True, text=True)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1
    r = subprocess.run([*CLI, "scaffold", "gamma", "-t", "mlp"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / "gamma" / "train.py").is_file()
    r = subprocess.run([*CLI, "scaffold", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--template" in r.stdout and "checkpoints" in r.stdout
