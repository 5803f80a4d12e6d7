"""``axonml train`` and ``axonml resume``: config, runs on synthetic and real data, checkpoints, resume, Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

import axonml
from axonml.cli._app import CommandError
from axonml.cli._train_config import OPTIMIZERS, SCHEDULERS, TrainConfig, load_config, tomllib
from axonml.cli._train_data import find_data_root
from axonml.cli._train_setup import DEFAULT_LR, Reporter, make_optimizer, make_scheduler
from axonml.cli._training import Trainer
from axonml.cli.main import app
from axonml.io import CheckpointManager, ModelArchive, load

NONDIFF_NAMES: list[str] = []

CLI = [sys.executable, "-m", "axonml.cli.main"]
FAST = ["--model", "mlp", "--dataset", "synthetic-mnist", "--limit", "400", "--batch-size", "50", "-q"]
DETERMINISTIC = ("epoch", "step", "train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "lr")


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def epochs_of(run: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: r[k] for k in DETERMINISTIC} for r in lines if r["event"] == "epoch"]


def weights(ckpt: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load(ckpt)["model"].items()}


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


# ----- configuration ---------------------------------------------------------------------------------------
def test_config_file_overrides_and_toml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('[model]\nname = "simple_cnn"\n[model.args]\nchannels = [4, 8]\ndropout = 0.25\n'
                    '[data]\ndataset = "synthetic-cifar"\nlimit = 100\n[optimizer]\nname = "sgd"\nlr = 1\n'
                    '[train]\nepochs = 3\n')
    cfg = load_config(path)
    assert cfg.model.args == {"channels": [4, 8], "dropout": 0.25} and cfg.optimizer.lr == 1.0
    cfg.override({"train.epochs": 5, "optimizer.lr": None, "data.limit": 0})
    assert (cfg.train.epochs, cfg.optimizer.lr, cfg.data.limit, cfg.data.dataset) == (5, 1.0, 0, "synthetic-cifar")
    again = TrainConfig.from_dict(tomllib.loads(cfg.to_toml()))
    assert again == cfg
    for bad, message in (('[data]\nlimt = 3\n', "unknown key 'limt'"), ('[train]\nepochs = "2"\n', "integer"),
                         ('[optimizer]\nname = "sgdd"\n', "optimizer.name"), ('[nope]\nx = 1\n', "unknown table"),
                         ('[data]\nval_split = 1.5\n', "val_split")):
        path.write_text(bad)
        with pytest.raises(CommandError, match=message):
            load_config(path)


def test_project_table_relative_paths_and_digits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file's relative paths are relative to the file, not to the current folder."""
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "run.toml").write_text('[project]\nname = "exp"\ntemplate = "mlp"\n[data]\ndataset = "digits"\n'
                                     'root = "data"\n[train]\noutput = "out"\n')
    monkeypatch.chdir(tmp_path)
    cfg = load_config("exp/run.toml")
    assert (cfg.project.name, cfg.project.template, cfg.data.dataset) == ("exp", "mlp", "digits")
    assert cfg.data.root == str(folder / "data") and cfg.train.output == str(folder / "out")
    (folder / "run.toml").write_text(f'[data]\ndataset = "imagefolder:pics"\nroot = "{tmp_path}"\n')
    cfg = load_config(folder / "run.toml")
    assert cfg.data.dataset == f"imagefolder:{folder / 'pics'}" and cfg.data.root == str(tmp_path)
    (folder / "run.toml").write_text('[project]\nauthor = "me"\n')
    with pytest.raises(CommandError, match="project: unknown key 'author'"):
        load_config(folder / "run.toml")


def test_lenet_is_an_alias_of_lenet5(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from axonml.vision.models import LeNet5, get_model, get_model_builder, list_models

    assert isinstance(get_model("lenet", num_classes=3), LeNet5) and isinstance(get_model("LeNet"), LeNet5)
    assert get_model_builder("lenet") is get_model_builder("lenet5")
    assert "lenet5" in list_models() and "lenet" not in list_models()  # canonical names only
    monkeypatch.chdir(tmp_path)
    result = invoke("train", "--model", "lenet", "--dataset", "synthetic-mnist", "--epochs", 1, "--limit", 100, "-q",
                    "--json")
    assert result.exit_code == 0, result.stderr
    run = Path(json.loads(result.stdout)["output"])
    assert run == Path("runs/lenet5-synthetic-mnist")  # the run is named by the canonical name
    manifest = ModelArchive.read_manifest(run / "model.axonml")
    assert manifest["architecture"]["args"] == ["lenet5"] and manifest["metadata"]["input_shape"] == [1, 28, 28]
    assert load_config(run / "config.toml").model.name == "lenet5"


def test_every_optimizer_and_schedule_is_built_and_steps() -> None:
    cfg = TrainConfig()
    for name in OPTIMIZERS:
        for schedule in SCHEDULERS:
            cfg.optimizer.name, cfg.scheduler.name = name, schedule
            w = axonml.ones(3, requires_grad=True)
            opt = make_optimizer(cfg, [w])
            sched = make_scheduler(cfg, opt, steps_per_epoch=4, planned_epochs=2)
            assert opt.param_groups[0]["lr"] == pytest.approx(DEFAULT_LR[name] / (25 if schedule == "onecycle" else 1))
            for _ in range(8):
                opt.zero_grad()
                (w * w).sum().backward()
                opt.step()
                if sched is not None:
                    sched.step()
            assert (sched is None) == (schedule == "none")
            assert not np.array_equal(w.detach().numpy(), np.ones(3)), (name, schedule)


# ----- a run, its files, and the archive ------------------------------------------------------------------
def test_train_writes_metrics_checkpoints_and_archive(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = invoke("train", *FAST, "--epochs", 3, "--output", run, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed" and summary["epochs_completed"] == 3 and summary["steps"] == 3 * 8
    records = epochs_of(run)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["val_acc"] > records[0]["val_acc"] and records[-1]["train_loss"] < records[0]["train_loss"]
    manager = CheckpointManager(run / "checkpoints", keep_last=None, metric="val_acc", mode="max")
    assert manager.latest is not None and manager.best is not None
    assert load(manager.best)["extra"]["loop"]["epoch"] == summary["best_epoch"]
    manifest = ModelArchive.read_manifest(run / "model.axonml")
    meta = manifest["metadata"]
    assert manifest["architecture"]["builder"] == "axonml.vision.get_model"
    assert manifest["architecture"]["args"] == ["mlp"] and manifest["architecture"]["kwargs"]["in_features"] == 784
    assert meta["input_shape"] == [1, 28, 28] and meta["mean"] == [0.1307] and len(meta["classes"]) == 10
    assert meta["epoch"] == summary["best_epoch"]
    assert load_config(run / "config.toml").train.epochs == 3
    # the archive holds the best epoch's weights
    archive = ModelArchive.load(run / "model.axonml")
    best = weights(manager.best)
    assert all(np.array_equal(v.numpy(), best[k]) for k, v in archive.model.state_dict().items())
    # a second run into the same folder is refused, unless --force
    again = invoke("train", *FAST, "--epochs", 1, "--output", run)
    assert again.exit_code == 1 and "already holds a run" in again.stderr and "--force" in again.stderr
    assert invoke("train", *FAST, "--epochs", 1, "--output", run, "--force").exit_code == 0
    assert len(epochs_of(run)) == 1


def test_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    straight, split = tmp_path / "straight", tmp_path / "split"
    opts = [*FAST, "--scheduler", "step", "--optimizer", "adamw"]
    assert invoke("train", *opts, "--epochs", 2, "--output", straight).exit_code == 0
    assert invoke("train", *opts, "--epochs", 1, "--output", split).exit_code == 0
    resumed = invoke("resume", split, "--epochs", 2, "-q", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["epochs_completed"] == 2
    assert epochs_of(straight) == epochs_of(split)
    latest = [CheckpointManager(r / "checkpoints", keep_last=None).latest for r in (straight, split)]
    assert same_weights(latest[0], latest[1])  # type: ignore[arg-type]
    nothing = invoke("resume", split, "-q", "--json")
    assert nothing.exit_code == 0 and json.loads(nothing.stdout)["status"] == "nothing_to_do"


def test_stop_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """Dropout (the RNG), a cosine schedule, Adam's moments and the epoch's running sums all resume exactly."""
    cfg = TrainConfig()
    cfg.model.name, cfg.model.args = "mlp", {"dropout": 0.3, "hidden_sizes": [32]}
    cfg.data.dataset, cfg.data.limit, cfg.data.batch_size = "synthetic-mnist", 300, 40
    cfg.scheduler.name, cfg.train.epochs = "cosine", 2
    quiet = Reporter(quiet=True)
    Trainer(cfg, tmp_path / "a", quiet).fit()

    def stop_at_step_3(trainer: Trainer) -> None:
        if trainer.state.step == 3:
            trainer.request_stop()

    stopped = Trainer(cfg, tmp_path / "b", quiet, on_step=stop_at_step_3).fit()
    assert stopped.status == "interrupted" and stopped.epochs_completed == 0 and stopped.checkpoint is not None
    state = load(stopped.checkpoint, map_location="cpu")
    assert state["extra"]["loop"]["batch"] == 3
    done = Trainer(cfg, tmp_path / "b", quiet, resume_state=state).fit()
    assert done.status == "completed" and done.steps == 14
    assert epochs_of(tmp_path / "a") == epochs_of(tmp_path / "b")
    a, b = (CheckpointManager(tmp_path / r / "checkpoints", keep_last=None).latest for r in "ab")
    assert same_weights(a, b)  # type: ignore[arg-type]
    # a cosine schedule laid out for 2 epochs cannot be stretched on resume
    longer = invoke("resume", tmp_path / "b", "--epochs", 3)
    assert longer.exit_code == 1 and "cosine schedule" in longer.stderr


def test_early_stopping_amp_and_progress_bar(tmp_path: Path) -> None:
    stale = invoke("train", *FAST, "--epochs", 10, "--patience", 1, "--optimizer", "sgd", "--lr", 1e-12,
                   "--output", tmp_path / "stale", "--json")
    summary = json.loads(stale.stdout)
    assert stale.exit_code == 0 and summary["status"] == "early_stopped" and summary["epochs_completed"] == 2
    amp = invoke("train", *FAST, "--epochs", 1, "--amp", "--output", tmp_path / "amp", "--json")
    assert amp.exit_code == 0 and np.isfinite(json.loads(amp.stdout)["last_epoch"]["train_loss"])
    cfg = TrainConfig()
    cfg.model.name, cfg.data.dataset, cfg.data.limit, cfg.train.epochs = "mlp", "synthetic-mnist", 200, 1
    screen = io.StringIO()
    Trainer(cfg, tmp_path / "bar", Reporter(False, Console(file=screen, force_terminal=True, width=150))).fit()
    text = screen.getvalue()
    assert "epoch 1/1" in text and "samples/s" in text and "3/3" in text and "val_acc" in text


def test_errors_are_one_line_with_exit_code_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        (["--dataset", "mnistt"], "data.dataset must be one of"),
        (["--model", "lenet6", "--dataset", "synthetic-mnist"], "did you mean lenet5"),
        (["--model", "resnet18", "--dataset", "synthetic-mnist", "--limit", "10", "--device", "cuda:7"], "cuda:7"),
        ([*FAST, "--wandb"], "--wandb needs the wandb package"),
    ]
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if it were not installed
    monkeypatch.setenv("AXONML_DATASETS_MIRROR", (tmp_path / "no-mirror").as_uri())
    cases.append((["--dataset", "fashion-mnist", "--data-root", str(tmp_path / "empty")], "could not be downloaded"))
    for args, message in cases:
        result = invoke("train", *args, "--output", tmp_path / "x", "--force")
        assert result.exit_code == 1, (args, result.stdout, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert invoke("train", "--epochs", "two").exit_code == 2
    assert invoke("resume", tmp_path / "missing").exit_code == 1


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "train", *FAST, "--epochs", "400", "--output", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not list((run / "checkpoints").glob("*.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted: saved" in err and "axonml resume" in err
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "interrupted" and not (run / "model.axonml").exists()
    stopped_at = events[-1]["epoch"]
    state = load(events[-1]["checkpoint"])
    assert state["extra"]["loop"]["epoch"] == stopped_at and state["extra"]["loop"]["step"] == events[-1]["step"]
    resumed = subprocess.run([*CLI, "resume", str(run), "--epochs", str(stopped_at + 1), "--json"],
                             capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming mlp" in resumed.stderr and json.loads(resumed.stdout)["epochs_completed"] == stopped_at + 1
    assert [r["epoch"] for r in epochs_of(run)] == list(range(1, stopped_at + 2))
    assert (run / "model.axonml").is_file()


def test_mnist_from_shared_data_learns(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "mnist"
    env = {**os.environ, "AXONML_HOME": str(tmp_path / "home")}  # nothing may come from a cache
    done = subprocess.run([*CLI, "train", "--model", "mlp", "--dataset", "mnist", "--data-root",
                           str(shared_data / "mnist"), "--epochs", "1", "--limit", "2000", "--val-split", "0",
                           "--output", str(run), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert "validation: the test split (2000 samples)" in done.stderr
    assert summary["best_val_acc"] > 0.6  # chance is 0.1
    assert ModelArchive.read_manifest(run / "model.axonml")["metadata"]["dataset"] == "mnist"
    # without --data-root, ../shared/data/<name> beside the project is found
    monkeypatch.chdir(Path(__file__).parents[2])
    assert find_data_root("mnist", "") == shared_data / "mnist"
    assert find_data_root("cifar10", "") == shared_data / "cifar-10-batches-py"
    monkeypatch.chdir(tmp_path)  # the checkout axonml runs from is found from anywhere
    assert find_data_root("mnist", "").resolve() == (shared_data / "mnist").resolve()


# ----- Weights & Biases, offline ---------------------------------------------------------------------------
def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run file (``run-<id>.wandb``): a LevelDB-style log of protobuf ``Record``s after a
    7-byte header, in 32 KiB blocks of chunks (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", data[:8]
    records, pos, parts = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a chunk header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if kind == 0:
            break
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


def wandb_key(item: Any) -> str:
    """The name of a logged item: ``key``, or its ``nested_key`` path joined with '/'."""
    return str(item.key or "/".join(item.nested_key))


def test_wandb_logs_every_epoch_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    result = invoke("train", *FAST, "--epochs", 2, "--wandb", "--output", run, "--json")
    assert result.exit_code == 0, result.stderr
    json.loads(result.stdout)  # wandb wrote nothing on stdout
    folders = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(folders) == 1, list((tmp_path / "wb").rglob("*"))
    (run_file,) = folders[0].glob("run-*.wandb")
    records = wandb_records(run_file)
    history = [{wandb_key(item): json.loads(item.value_json) for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    ours = epochs_of(run)
    assert len(history) == 2
    for logged, epoch in zip(history, ours, strict=True):
        assert logged["_step"] == epoch["step"]  # logged at the optimizer step
        for key in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"):
            assert logged[key] == pytest.approx(epoch[key]), key
    (config,) = [r.run.config for r in records if r.WhichOneof("record_type") == "run"]
    settings = {wandb_key(item): json.loads(item.value_json) for item in config.update}
    assert settings["model"]["name"] == "mlp" and settings["train"]["epochs"] == 2
    # the same through train.py in a generated project, the run id kept in its checkpoints
    assert invoke("new", tmp_path / "proj", "-t", "mlp").exit_code == 0
    toml = tmp_path / "proj" / "axonml.toml"
    toml.write_text(toml.read_text().replace("enabled = false", "enabled = true"))
    env = {**os.environ, "WANDB_DIR": str(tmp_path / "wb2")}
    done = subprocess.run([sys.executable, "train.py", "--epochs", "1", "--limit", "64"], cwd=tmp_path / "proj",
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    (run_file,) = (tmp_path / "wb2" / "wandb").glob("offline-run-*/run-*.wandb")
    logged = [r for r in wandb_records(run_file) if r.WhichOneof("record_type") == "history"]
    assert len(logged) == 1 and "val_acc" in {wandb_key(item) for item in logged[0].history.item}
