"""``axonml eval`` and ``axonml predict``: metrics checked by hand, every input kind, errors, real MNIST."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import axonml
from axonml.cli._train_data import InputSpec, load_data
from axonml.cli._train_eval import classification_metrics
from axonml.cli._train_models import create_model, model_kwargs
from axonml.cli.main import app
from axonml.io import ModelArchive
from axonml.vision import transforms as T
from axonml.vision.datasets import MNIST, SyntheticCIFAR, SyntheticMNIST

NONDIFF_NAMES: list[str] = []

CLI = [sys.executable, "-m", "axonml.cli.main"]


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MLP trained on synthetic digits."""
    out = tmp_path_factory.mktemp("eval") / "run"
    result = invoke("train", "--model", "mlp", "--dataset", "synthetic-mnist", "--limit", "600", "--epochs", "2",
                    "--output", out, "-q")
    assert result.exit_code == 0, result.stderr
    return out


def model_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """The archive's model applied to ready inputs (N, C, H, W), computed without the CLI."""
    model = ModelArchive.load(path).model.eval()
    with axonml.no_grad():
        return model(axonml.tensor(x)).numpy().astype(np.float64)  # type: ignore[no-any-return]


def mnist_inputs(images: np.ndarray) -> np.ndarray:
    return ((images.astype(np.float32) / 255 - 0.1307) / 0.3081)[:, None]


# ----- metrics -------------------------------------------------------------------------------------------
def test_metrics_of_a_hand_worked_example() -> None:
    logits = np.array([[2, 1, 0], [1, 2, 0], [0, 3, 1], [0, 1, 2], [2, 0, 1]], np.float32)
    targets = np.array([0, 0, 1, 2, 2])  # predictions: 0, 1, 1, 2, 0
    m = classification_metrics(logits, targets, ["a", "b", "c"], top_k=2)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(3 / 5) and m["top2_accuracy"] == 1.0
    assert [r["precision"] for r in m["per_class"]] == pytest.approx([1 / 2, 1 / 2, 1])
    assert [r["recall"] for r in m["per_class"]] == pytest.approx([1 / 2, 1, 1 / 2])
    assert [r["f1"] for r in m["per_class"]] == pytest.approx([1 / 2, 2 / 3, 2 / 3])
    assert [r["support"] for r in m["per_class"]] == [2, 1, 2]
    assert m["macro"]["f1"] == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert m["weighted"]["recall"] == pytest.approx(3 / 5)
    rows = [(logits[i], targets[i]) for i in range(5)]
    loss = sum(math.log(sum(math.exp(v) for v in r)) - r[t] for r, t in rows) / 5
    assert m["loss"] == pytest.approx(loss)
    # a class never predicted has precision 0, not NaN
    never = classification_metrics(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([0, 1]), ["x", "y"])
    assert never["per_class"][1] == {"class": "y", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert never["top2_accuracy"] == 1.0 and never["top_k"] == 2


def test_eval_matches_a_computation_by_hand(run: Path) -> None:
    result = invoke("eval", run / "model.axonml", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    test = SyntheticMNIST(train=False)  # what eval reads: the test split of the training dataset
    logits = model_logits(run / "model.axonml", mnist_inputs(test.data.numpy()))
    targets = test.targets.numpy()
    pred = logits.argmax(1)
    confusion = [[0] * 10 for _ in range(10)]
    for t, p in zip(targets, pred):
        confusion[t][p] += 1
    assert report["samples"] == len(targets) == 2000 and report["confusion_matrix"] == confusion
    assert report["accuracy"] == pytest.approx(float(np.mean(pred == targets)))
    top5 = np.mean([t in np.argsort(-row)[:5] for row, t in zip(logits, targets)])
    assert report["top5_accuracy"] == pytest.approx(top5)
    for c, row in enumerate(report["per_class"]):
        tp = confusion[c][c]
        predicted, actual = sum(confusion[r][c] for r in range(10)), sum(confusion[c])
        assert row["precision"] == pytest.approx(tp / predicted) and row["recall"] == pytest.approx(tp / actual)
        assert row["f1"] == pytest.approx(2 * tp / (predicted + actual))
    shifted = logits - logits.max(1, keepdims=True)
    loss = np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(targets)), targets])
    assert report["loss"] == pytest.approx(loss, rel=1e-5)
    sk = pytest.importorskip("sklearn.metrics")
    p, r, f, _ = sk.precision_recall_fscore_support(targets, pred, zero_division=0)
    assert [x["f1"] for x in report["per_class"]] == pytest.approx(f.tolist())
    assert report["macro"]["precision"] == pytest.approx(p.mean())
    assert report["macro"]["recall"] == pytest.approx(r.mean())


def test_eval_of_a_checkpoint_prints_tables_and_runs_in_a_subprocess(run: Path) -> None:
    ckpt = sorted((run / "checkpoints").glob("*.ckpt"))[0]
    shown = invoke("eval", ckpt, "--limit", "300")
    assert shown.exit_code == 0, shown.stderr
    assert "macro avg" in shown.stdout and "confusion matrix" in shown.stdout and "top-5 accuracy" in shown.stdout
    proc = subprocess.run([*CLI, "eval", str(run), "--limit", "300", "--json", "--batch-size", "64"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["samples"] == 300


def test_eval_errors(run: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.axonml").write_bytes(b"not a model")
    cases = [(tmp_path / "nope.axonml", "not found"), (tmp_path / "junk.axonml", "neither"),
             (run, "synthetic-cifar gives 3x32x32 images")]
    for path, message in cases:
        extra = ["--dataset", "synthetic-cifar", "--limit", "10"] if path == run else []
        result = invoke("eval", path, *extra)
        assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert invoke("eval", run, "--split", "val").exit_code == 1
    assert invoke("eval").exit_code == 2


# ----- predict -------------------------------------------------------------------------------------------
def test_predict_every_input_kind_agrees_with_the_model(run: Path, tmp_path: Path) -> None:
    test = SyntheticMNIST(train=False, size=6)
    images = test.data.numpy()
    for i in range(3):
        Image.fromarray(images[i]).save(tmp_path / f"d{i}.png")
    Image.fromarray(images[3]).resize((56, 56)).convert("RGB").save(tmp_path / "big.jpg", quality=95)
    inputs = mnist_inputs(images)
    np.save(tmp_path / "pixels.npy", images)  # uint8: pixels, preprocessed as images
    np.save(tmp_path / "one.npy", inputs[4].astype(np.float64))  # one ready input
    (tmp_path / "rows.json").write_text(json.dumps(inputs[:2].reshape(2, -1).tolist()))
    np.savetxt(tmp_path / "rows.csv", inputs[:3].reshape(3, -1), delimiter=",",
               header=",".join(f"x{i}" for i in range(784)), comments="")
    files = ["d0.png", "d1.png", "d2.png", "pixels.npy", "one.npy", "rows.json", "rows.csv"]
    result = invoke("predict", run, *(tmp_path / f for f in files), "--json", "--top-k", "4", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    preds = json.loads(result.stdout)["predictions"]
    probs = np.exp(model_logits(run / "model.axonml", inputs))
    probs /= probs.sum(1, keepdims=True)
    expected = [0, 1, 2, 0, 1, 2, 3, 4, 5, 4, 0, 1, 0, 1, 2]  # the sample behind each prediction
    assert [p["input"].split("/")[-1] for p in preds][:4] == ["d0.png", "d1.png", "d2.png", "pixels.npy[0]"]
    assert len(preds) == len(expected)
    for p, i in zip(preds, expected):
        assert p["class"] == int(probs[i].argmax()) and p["probability"] == pytest.approx(probs[i].max(), rel=1e-4)
        assert [t["class"] for t in p["top_k"]] == np.argsort(-probs[i])[:4].tolist()
        assert p["label"] == MNIST.classes[p["class"]]
    # a resized RGB JPEG is converted to the model's 28x28 grey input
    jpg = invoke("predict", run, tmp_path / "big.jpg", "--json")
    grey = np.asarray(Image.open(tmp_path / "big.jpg").convert("L").resize((28, 28), Image.Resampling.BILINEAR))
    by_hand = model_logits(run / "model.axonml", mnist_inputs(grey[None]))[0]
    assert json.loads(jpg.stdout)["predictions"][0]["class"] == int(by_hand.argmax())
    shown = subprocess.run([*CLI, "predict", str(run / "model.axonml"), str(tmp_path / "d0.png")],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "d0.png" in shown.stdout and MNIST.classes[preds[0]["class"]] in shown.stdout


def test_predict_errors(run: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5), np.float32))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "words.csv").write_text("a,b\nc,d\n")
    cases = [("wrong.npy", "neither one input"), ("bad.png", "cannot read the image"), ("notes.txt", "unsupported"),
             ("words.csv", "cannot read numbers"), ("missing.png", "not found")]
    for name, message in cases:
        result = invoke("predict", run, tmp_path / name)
        assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert invoke("predict", run, tmp_path / "wrong.npy", "--top-k", "0").exit_code == 1
    assert invoke("predict", run).exit_code == 2


# ----- other datasets and models -------------------------------------------------------------------------
def test_grey_images_feed_rgb_models_and_prepare_matches_the_transforms() -> None:
    spec = InputSpec((3, 28, 28), T.MNIST_MEAN * 3, T.MNIST_STD * 3, [str(i) for i in range(10)], 1)
    kwargs = model_kwargs("resnet18", spec, {"zero_init_residual": True})
    assert kwargs == {"num_classes": 10, "cifar_stem": True, "zero_init_residual": True}
    model, _ = create_model("resnet18", spec, {})  # one forward pass of (2, 3, 28, 28) checks it
    assert model.conv1.stride == (1, 1)
    grey = SyntheticMNIST(train=False, size=2)
    pixels = axonml.tensor(grey.data.numpy()[:, None])
    ours = spec.prepare(pixels).numpy()
    theirs = T.Normalize(T.MNIST_MEAN * 3, T.MNIST_STD * 3)(T.ToTensor()(grey[0][0].convert("RGB"))).numpy()
    np.testing.assert_allclose(ours[0], theirs, rtol=1e-6, atol=1e-6)


def test_image_folder_and_cifar_like_runs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for name, level in (("dark", 40), ("light", 210)):
        (root / name).mkdir(parents=True)
        for i in range(12):
            px = np.clip(level + rng.normal(0, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / name / f"{i}.png")
    cfg = tmp_path / "folder.toml"
    cfg.write_text(f'[model]\nname = "mlp"\n[data]\ndataset = "imagefolder:{root}"\nimage_size = 8\nval_split = 0.25\n'
                   '[train]\nepochs = 3\n[optimizer]\nlr = 0.01\n')
    done = invoke("train", cfg, "--output", tmp_path / "f", "-q", "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["best_val_acc"] == 1.0
    meta = ModelArchive.read_manifest(tmp_path / "f" / "model.axonml")["metadata"]
    assert meta["input_shape"] == [3, 8, 8] and meta["classes"] == ["dark", "light"] and meta["mean"][0] < 0.6
    guess = invoke("predict", tmp_path / "f", root / "dark" / "0.png", root / "light", "--json")
    labels = [p["label"] for p in json.loads(guess.stdout)["predictions"]]
    assert labels == ["dark"] + ["light"] * 12
    graded = invoke("eval", tmp_path / "f", "--json", "--workers", "2")
    assert graded.exit_code == 0 and json.loads(graded.stdout)["accuracy"] == 1.0
    # RGB CIFAR-like data through a small CNN
    cnn = invoke("train", "--model", "simple_cnn", "--dataset", "synthetic-cifar", "--limit", "96", "--epochs", "1",
                 "--output", tmp_path / "cnn", "-q", "--json")
    assert cnn.exit_code == 0, cnn.stderr
    assert ModelArchive.read_manifest(tmp_path / "cnn" / "model.axonml")["metadata"]["mean"] == list(T.CIFAR10_MEAN)
    sample = SyntheticCIFAR(train=False, size=1)
    sample[0][0].save(tmp_path / "shape.png")
    assert invoke("predict", tmp_path / "cnn", tmp_path / "shape.png").exit_code == 0


def test_real_mnist_eval_and_predict(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mnist"
    trained = invoke("train", "--model", "mlp", "--dataset", "mnist", "--data-root", shared_data / "mnist",
                     "--limit", "2000", "--epochs", "1", "--output", out, "-q")
    assert trained.exit_code == 0, trained.stderr
    report = invoke("eval", out, "--limit", "1000", "--json")
    assert report.exit_code == 0, report.stderr
    metrics = json.loads(report.stdout)
    assert metrics["samples"] == 1000 and metrics["accuracy"] > 0.6 and metrics["macro"]["f1"] > 0.5
    test = load_data("mnist", str(shared_data / "mnist"), model="mlp", val_split=0, limit=3, seed=0, split="test")
    images = test.val.tensors[0].numpy()[:, 0]  # type: ignore[attr-defined]
    for i in range(3):
        Image.fromarray(images[i]).save(tmp_path / f"{i}.png")
    shown = invoke("predict", out, *(tmp_path / f"{i}.png" for i in range(3)), "--json")
    probs = model_logits(out / "model.axonml", mnist_inputs(images))
    assert [p["class"] for p in json.loads(shown.stdout)["predictions"]] == probs.argmax(1).tolist()
