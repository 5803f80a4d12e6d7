"""``.axonml`` model archives: manifest, rebuild from config, SHA-256 checks, trust rules."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from iohelp import same_bits

import axonml as ax
from axonml.io import IntegrityError, ModelArchive, SerializationError, register_builder

pytest.importorskip("safetensors")


class TinyNet(ax.nn.Module):
    """A model defined outside axonml: rebuilt only when its module is trusted."""

    def __init__(self, width: int = 4, depth: int = 1) -> None:
        super().__init__()
        self.layers = ax.nn.Sequential(*[ax.nn.Linear(width, width) for _ in range(depth)])
        self.norm = ax.nn.BatchNorm1d(width)

    def forward(self, x: ax.Tensor) -> ax.Tensor:
        return self.norm(self.layers(x))


@register_builder("tiny")
def build_tiny(kind: str, width: int = 4) -> ax.nn.Module:
    return TinyNet(width=width, depth=2 if kind == "deep" else 1)


def _trained() -> tuple[TinyNet, ax.optim.Optimizer, object]:
    ax.manual_seed(0)
    model = TinyNet(width=5, depth=2)
    opt = ax.optim.Adam(model.parameters(), lr=1e-2)
    sched = ax.optim.lr_scheduler.StepLR(opt, 3)
    for _ in range(2):
        opt.zero_grad()
        model(ax.randn(8, 5)).pow(2).mean().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_save_and_rebuild_from_class_config(tmp_path: Path) -> None:
    model, opt, sched = _trained()
    path = ModelArchive.save(tmp_path / "net.axonml", model, name="tiny", version="2.1",
                             config={"width": 5, "depth": 2}, metadata={"dataset": "random"},
                             metrics={"loss": 0.25}, optimizer=opt, scheduler=sched)
    manifest = ModelArchive.read_manifest(path)
    assert manifest["name"] == "tiny" and manifest["version"] == "2.1" and manifest["format"] == "axonml.archive"
    assert manifest["axonml_version"] == ax.__version__
    assert manifest["architecture"] == {"class": f"{__name__}:TinyNet", "kwargs": {"width": 5, "depth": 2}}
    assert manifest["metrics"] == {"loss": 0.25} and manifest["metadata"] == {"dataset": "random"}
    assert manifest["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert set(manifest["files"]) == {"weights.safetensors", "optimizer.axonml", "scheduler.axonml"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    arch = ModelArchive.load(path, trusted_modules=[__name__])
    assert isinstance(arch.model, TinyNet) and arch.name == "tiny" and arch.metrics == {"loss": 0.25}
    for (k, a), (_, b) in zip(model.state_dict().items(), arch.model.state_dict().items()):
        assert same_bits(a, b), k
    opt2 = ax.optim.Adam(arch.model.parameters(), lr=1e-2)
    opt2.load_state_dict(arch.optimizer_state)
    sched2 = ax.optim.lr_scheduler.StepLR(opt2, 3)
    sched2.load_state_dict(arch.scheduler_state)
    assert sched2.last_epoch == 2 and opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    x = ax.randn(3, 5)
    model.eval()
    arch.model.eval()
    assert same_bits(model(x).detach(), arch.model(x).detach())


def test_axonml_classes_are_trusted_by_default(tmp_path: Path) -> None:
    model = ax.nn.Linear(3, 2, bias=False)
    ModelArchive.save(tmp_path / "lin.axonml", model, config={"in_features": 3, "out_features": 2, "bias": False})
    arch = ModelArchive.load(tmp_path / "lin.axonml")
    assert type(arch.model) is ax.nn.Linear and arch.model.bias is None
    assert same_bits(arch.model.weight, model.weight)
    assert arch.optimizer_state is None and arch.scheduler_state is None
    assert "Linear" in repr(arch)


def test_registered_builders(tmp_path: Path) -> None:
    model = build_tiny("deep", width=3)
    ModelArchive.save(tmp_path / "b.axonml", model, builder="tiny", args=["deep"], config={"width": 3})
    arch = ModelArchive.load(tmp_path / "b.axonml")  # a registered builder needs no trusted_modules
    assert len(arch.model.layers) == 2 and same_bits(arch.model.layers[1].weight, model.layers[1].weight)
    with pytest.raises(KeyError, match="not registered"):
        ModelArchive.save(tmp_path / "x.axonml", model, builder="nope")


def test_untrusted_code_is_never_imported(tmp_path: Path) -> None:
    model, _, _ = _trained()
    ModelArchive.save(tmp_path / "n.axonml", model, config={"width": 5, "depth": 2})
    with pytest.raises(SerializationError, match="not a trusted module"):
        ModelArchive.load(tmp_path / "n.axonml")
    # a manifest pointing at os.system is refused before anything is imported or called
    for arch, msg in (({"class": "os:system", "kwargs": {}}, "not a trusted module"),
                      ({"class": "axonml.io.serialization:save", "kwargs": {}}, "not an nn.Module class"),
                      ({"builder": "rm_rf", "builder_module": "shutil", "kwargs": {}}, "not registered")):
        with pytest.raises(SerializationError, match=msg):
            ModelArchive.build(arch)
    # with the model given, the architecture is not used at all
    fresh = TinyNet(width=5, depth=2)
    arch = ModelArchive.load(tmp_path / "n.axonml", model=fresh)
    assert arch.model is fresh and same_bits(fresh.layers[0].weight, model.layers[0].weight)


def test_archive_without_config_needs_a_model(tmp_path: Path) -> None:
    ModelArchive.save(tmp_path / "c.axonml", TinyNet())
    with pytest.raises(SerializationError, match="pass model="):
        ModelArchive.load(tmp_path / "c.axonml", trusted_modules=[__name__])
    assert isinstance(ModelArchive.load(tmp_path / "c.axonml", model=TinyNet()).model, TinyNet)


def _rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(buf, "w") as zout:
        for name in zin.namelist():
            data = change.get(name, zin.read(name))
            if data is not None:
                zout.writestr(name, data)
        for name, data in change.items():
            if name not in zin.namelist() and data is not None:
                zout.writestr(name, data)
    dst.write_bytes(buf.getvalue())


def test_tampering_is_detected(tmp_path: Path) -> None:
    model, opt, _ = _trained()
    good = ModelArchive.save(tmp_path / "g.axonml", model, config={"width": 5, "depth": 2}, optimizer=opt)
    assert ModelArchive.verify(good)["name"] == "TinyNet"
    with zipfile.ZipFile(good) as zf:
        weights = bytearray(zf.read("weights.safetensors"))
    weights[-1] ^= 0x01  # one bit of one weight
    cases = {
        "weights": ({"weights.safetensors": bytes(weights)}, "weights.safetensors.*SHA-256"),
        "optimizer": ({"optimizer.axonml": ax.io.dumps({"state": {}, "param_groups": []})}, "optimizer.axonml"),
        "extra": ({"payload.py": b"import os"}, "not listed"),
        "missing": ({"optimizer.axonml": None}, "missing"),
    }
    for name, (change, msg) in cases.items():
        _rewrite(good, tmp_path / f"{name}.axonml", change)
        with pytest.raises(IntegrityError, match=msg):
            ModelArchive.load(tmp_path / f"{name}.axonml", trusted_modules=[__name__])
        with pytest.raises(IntegrityError):
            ModelArchive.verify(tmp_path / f"{name}.axonml")
    raw = good.read_bytes()
    (tmp_path / "cut.axonml").write_bytes(raw[:-100])
    with pytest.raises(SerializationError, match="truncated"):
        ModelArchive.load(tmp_path / "cut.axonml")
    _rewrite(good, tmp_path / "other.axonml", {"manifest.json": json.dumps({"format": "zip"}).encode()})
    with pytest.raises(SerializationError, match="not an axonml archive"):
        ModelArchive.load(tmp_path / "other.axonml")


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(SerializationError, match="metadata must be JSON"):
        ModelArchive.save(tmp_path / "x.axonml", TinyNet(), metadata={"a": object()})
    with pytest.raises(SerializationError, match="config must be JSON"):
        ModelArchive.save(tmp_path / "x.axonml", TinyNet(), config={"act": ax.nn.ReLU()})
    with pytest.raises(TypeError, match="expects an nn"):
        ModelArchive.save(tmp_path / "x.axonml", {"w": ax.ones(1)})  # type: ignore[arg-type]
    assert not (tmp_path / "x.axonml").exists()
