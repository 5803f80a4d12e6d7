"""The README's main job and command-line tour, end to end offline on the scikit-learn digits fallback."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("typer")

NONDIFF_NAMES: list[str] = []
ROOT = Path(__file__).resolve().parents[2]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["AXONML_HOME"] = str(tmp / "home")  # no cached datasets
    env["AXONML_DATASETS_MIRROR"] = (tmp / "no-mirror").as_uri()  # every download fails, as offline
    env.pop("AXONML_NO_FALLBACK", None)
    env.update(extra)
    return env


def _tour() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Command-line tour.*?```bash\n(.*?)```", text, flags=re.S)
    assert m is not None, "README.md has no '## Command-line tour' section with a bash block"
    return [shlex.split(ln, comments=True) for ln in m.group(1).splitlines() if ln.strip()]


def test_readme_tour_is_the_five_commands() -> None:
    tools = [argv[1] for argv in _tour() if argv[0] == "axonml"]
    assert tools == ["train", "eval", "predict", "inspect", "convert"], tools
    first = (ROOT / "README.md").read_text().split("```bash\n", 1)[1].splitlines()[0]
    assert first.endswith("axonml " + shlex.join(_tour()[0][1:])), "set-up line and tour differ"


def test_readme_tour_runs_offline_on_the_digits(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = _env(tmp_path)
    for argv in _tour():
        if argv[0] == "axonml":
            argv = [sys.executable, "-m", "axonml.cli.main", *argv[1:]]
            if argv[3] == "train":  # no MNIST anywhere: the fallback, on a few samples
                argv += ["--data-root", str(empty), "--limit", "300", "-q"]
            elif argv[3] == "eval":
                argv += ["--limit", "100"]
        else:
            argv = [sys.executable, *argv[1:]]
        r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 0, f"{shlex.join(argv)}\n{r.stdout}\n{r.stderr}"
        if argv[3:4] == ["train"]:
            lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
            assert len(lines) == 1 and "1,797 real scikit-learn digits" in lines[0], r.stderr
            assert "not downloadable (offline)" in lines[0], r.stderr
    assert (tmp_path / "runs" / "lenet5-mnist" / "model.axonml").is_file()
    assert (tmp_path / "model.safetensors").is_file()


@pytest.mark.parametrize("how", ["env", "flag"])
def test_no_fallback_fails_in_one_line(tmp_path: Path, how: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    args = ["--no-fallback"] if how == "flag" else []
    extra_env = {"AXONML_NO_FALLBACK": "1"} if how == "env" else {}
    r = subprocess.run([sys.executable, "-m", "axonml.cli.main", "train", "--model", "lenet5", "--dataset", "mnist",
                        "--epochs", "1", "--data-root", str(empty), "--limit", "50", "-o", str(tmp_path / "run"),
                        *args],
                       capture_output=True, text=True, env=_env(tmp_path, **extra_env), timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "mnist" in lines[0] and "could not be downloaded" in lines[0], r.stderr
    assert "digits" not in r.stderr


def test_fallback_trains_on_digits_and_eval_reuses_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from axonml.cli._train_data import load_data

    monkeypatch.setenv("AXONML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("AXONML_DATASETS_MIRROR", (tmp_path / "no-mirror").as_uri())
    monkeypatch.delenv("AXONML_NO_FALLBACK", raising=False)
    (tmp_path / "empty").mkdir()
    b = load_data("mnist", str(tmp_path / "empty"), model="lenet5", val_split=0.0, limit=0, seed=0)
    assert b.info == {"dataset": "digits", "root": ""}
    assert (len(b.train), len(b.val)) == (1497, 300)  # type: ignore[arg-type]
    assert b.spec.shape == (1, 28, 28) and b.spec.classes[0] == "0 - zero"
    assert "1,797 real scikit-learn digits" in capsys.readouterr().err
    # downloads off: the fallback too, saying why
    load_data("mnist", str(tmp_path / "empty"), model="lenet5", val_split=0.1, limit=20, seed=0, download=False)
    assert "downloads are off" in capsys.readouterr().err
    with pytest.raises(Exception, match="could not be downloaded"):
        load_data("mnist", str(tmp_path / "empty"), model="lenet5", val_split=0.1, limit=20, seed=0, fallback=False)
    # other datasets never fall back
    with pytest.raises(Exception, match="fashion-mnist"):
        load_data("fashion-mnist", str(tmp_path / "empty"), model="lenet5", val_split=0.1, limit=20, seed=0)


def test_digits_dataset_matches_sklearn() -> None:
    from sklearn.datasets import load_digits

    from axonml.vision.datasets import DIGITS_MEAN, DIGITS_STD, Digits

    train, test = Digits(train=True), Digits(train=False)
    assert (len(train), len(test)) == (1497, 300)
    x, y = train.data.numpy(), train.targets.numpy()
    assert x.shape == (1497, 28, 28) and x.dtype == np.uint8 and y.dtype == np.int64
    img, label = test[0]
    assert img.mode == "L" and img.size == (28, 28) and isinstance(label, int)
    # each image is its 8x8 source enlarged 3x and padded by 2, pixels 0..16 -> 0..255
    d = load_digits()
    src = np.rint(d.images * (255 / 16)).astype(np.uint8)
    both = np.concatenate([x, test.data.numpy()])
    labels = np.concatenate([y, test.targets.numpy()])
    small = both[:, 2:26:3, 2:26:3]  # (1797, 8, 8)
    assert np.array_equal(np.sort(small.reshape(1797, -1), axis=0), np.sort(src.reshape(1797, -1), axis=0))
    assert np.array_equal(np.bincount(labels), np.bincount(d.target))
    assert both[:, :2].max() == 0 and both[:, :, 26:].max() == 0
    # the split is fixed (not seeded by anything else) and disjoint
    assert np.array_equal(Digits(train=False).targets.numpy(), test.targets.numpy())
    assert abs(both.mean() / 255 - DIGITS_MEAN[0]) < 1e-3 and abs((both / 255).std() - DIGITS_STD[0]) < 1e-3
