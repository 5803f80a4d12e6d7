"""State-dict key mapping (prefixes, regex, explicit maps) and the JSON inspection view."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

import axonml as ax
from axonml.io import add_prefix, describe_tensor, map_state_dict, rename_keys, state_dict_to_json, strip_prefix


class Wrapper(ax.nn.Module):
    """What DataParallel does to names: the real model under ``module``."""

    def __init__(self, module: ax.nn.Module) -> None:
        super().__init__()
        self.module = module


def _net() -> ax.nn.Module:
    return ax.nn.Sequential(ax.nn.Linear(2, 3), ax.nn.BatchNorm1d(3))


def test_strip_and_add_prefix_round_trip_into_models() -> None:
    wrapped = Wrapper(_net())
    sd = wrapped.state_dict()
    assert next(iter(sd)) == "module.0.weight"
    plain = strip_prefix(sd)
    assert list(plain) == [k.removeprefix("module.") for k in sd]
    assert plain["0.weight"] is sd["module.0.weight"]  # values are the same objects
    assert plain._metadata["1"] == {"version": 2}  # BatchNorm's version follows its key
    fresh = _net()
    assert not fresh.load_state_dict(plain).missing_keys
    back = add_prefix(plain)
    assert list(back) == list(sd) and back._metadata["module.1"] == {"version": 2}
    Wrapper(_net()).load_state_dict(back)
    assert list(strip_prefix(plain)) == list(plain)  # keys without the prefix are left alone


def test_rename_keys_by_regex() -> None:
    sd = OrderedDict([("encoder.layer.0.w", 1), ("encoder.layer.11.w", 2), ("head.w", 3)])
    out = rename_keys(sd, r"^encoder\.layer\.(\d+)\.", r"blocks.\1.")
    assert list(out) == ["blocks.0.w", "blocks.11.w", "head.w"]
    assert list(rename_keys(sd, r"\.w$", lambda m: ".weight")) == ["encoder.layer.0.weight",
                                                                    "encoder.layer.11.weight", "head.weight"]
    with pytest.raises(KeyError, match="both map to"):
        rename_keys(sd, r".*\.", "")


def test_map_state_dict() -> None:
    sd = OrderedDict([("fc1.weight", 1), ("fc1.bias", 2), ("extra", 3)])
    out = map_state_dict(sd, {"fc1.weight": "0.weight", "fc1.bias": "0.bias"})
    assert out == OrderedDict([("0.weight", 1), ("0.bias", 2), ("extra", 3)])
    assert map_state_dict(sd, {"fc1.weight": "w", "extra": None}) == OrderedDict([("w", 1), ("fc1.bias", 2)])
    assert list(map_state_dict(sd, {"fc1.bias": "b"}, drop_unmapped=True)) == ["b"]
    assert list(map_state_dict(sd, lambda k: k.upper())) == ["FC1.WEIGHT", "FC1.BIAS", "EXTRA"]
    with pytest.raises(KeyError, match="typo"):
        map_state_dict(sd, {"typo": "x"}, strict=True)
    with pytest.raises(KeyError, match="both map to"):
        map_state_dict(sd, {"fc1.weight": "extra"})


def test_state_dict_json(tmp_path: Path) -> None:
    w = ax.tensor([[1.0, -2.0], [0.0, float("nan")]])
    sd = OrderedDict([("w", w), ("count", ax.tensor(3)), ("mask", ax.tensor([True, False])),
                      ("bf", ax.ones(2, dtype=ax.bfloat16)), ("note", "hello"), ("obj", object())])
    text = state_dict_to_json(sd, tmp_path / "sd.json", values=True)
    doc = json.loads(text)
    assert json.loads((tmp_path / "sd.json").read_text()) == doc
    e = doc["tensors"]["w"]
    assert e["shape"] == [2, 2] and e["dtype"] == "float32" and e["numel"] == 4 and e["bytes"] == 16
    assert e["nan"] == 1 and e["min"] == -2.0 and e["max"] == 1.0 and e["zeros"] == 1
    assert e["mean"] == pytest.approx(-1 / 3) and e["values"] == [[1.0, -2.0], [0.0, "nan"]]
    assert doc["tensors"]["count"]["dtype"] == "int64" and doc["tensors"]["count"]["values"] == 3
    assert doc["tensors"]["mask"]["dtype"] == "bool" and doc["tensors"]["bf"]["values"] == [1.0, 1.0]
    assert doc["tensors"]["note"] == {"value": "hello"} and doc["tensors"]["obj"]["type"] == "object"
    assert doc["num_tensors"] == 4 and doc["total_numel"] == 9 and doc["total_bytes"] == 16 + 8 + 2 + 4


def test_json_of_nested_training_state() -> None:
    model = _net()
    opt = ax.optim.Adam(model.parameters())
    model(ax.randn(4, 2)).sum().backward()
    opt.step()
    doc = json.loads(state_dict_to_json({"model": model.state_dict(), "optimizer": opt.state_dict()}, stats=False))
    assert doc["tensors"]["model.0.weight"] == {"shape": [3, 2], "dtype": "float32", "numel": 6, "bytes": 24,
                                                "device": "cpu", "requires_grad": False}
    assert doc["tensors"]["optimizer.state.0.exp_avg"]["shape"] == [3, 2]
    assert doc["tensors"]["optimizer.param_groups.0.lr"] == {"value": 0.001}
    assert doc["tensors"]["optimizer.param_groups.0.betas"] == {"value": [0.9, 0.999]}


def test_describe_numpy_array() -> None:
    info = describe_tensor(np.arange(4, dtype=np.int16))
    assert info["dtype"] == "int16" and info["std"] == pytest.approx(np.arange(4).std())
