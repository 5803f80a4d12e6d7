"""``axonml load`` and ``axonml analyze`` through Typer's runner and a real subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from axonml.cli._train_models import BUILDER, build_vision_model
from axonml.cli.main import app
from axonml.io import ModelArchive

NONDIFF_NAMES: list[str] = []


@pytest.fixture()
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder (the current directory) with a small MLP archive, its state dict, an ImageFolder and a CSV."""
    from PIL import Image

    from axonml.io import save_file

    monkeypatch.chdir(tmp_path)
    model = build_vision_model("mlp", in_features=12, num_classes=3)
    ModelArchive.save(tmp_path / "m.axonml", model, builder=BUILDER,
                      config={"model_name": "mlp", "in_features": 12, "num_classes": 3},
                      metadata={"input_shape": [12]})
    save_file(model.state_dict(), str(tmp_path / "m.safetensors"))
    rng = np.random.default_rng(0)
    for cls, n in (("cat", 9), ("dog", 3), ("eel", 4)):  # imbalance 9 / 3 = 3
        d = tmp_path / "imgs" / cls
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 120, (2, 2, 3), dtype=np.uint8)).save(d / f"{i}.png")
    rows = ["a,b,label"] + [f"{i * 0.01},{i * 100.0},{i % 2}" for i in range(20)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "axonml.cli.main", *args], capture_output=True, text=True)


def test_load_status_clear_and_atomic_state(ws: Path) -> None:
    r = CliRunner()
    res = r.invoke(app, ["load", "both", "m.axonml", "imgs", "--json"])
    assert res.exit_code == 0, res.output
    state = json.loads((ws / ".axonml" / "workspace.json").read_text())
    assert state["model"]["format"] == "axonml-archive" and len(state["model"]["sha256"]) == 64
    assert state["model"]["size"] == (ws / "m.axonml").stat().st_size
    assert state["data"]["format"] == "imagefolder" and state["data"]["num_samples"] == 16
    assert not list((ws / ".axonml").glob("*.tmp"))  # the temporary file was renamed away
    status = json.loads(r.invoke(app, ["load", "status", "--json"]).stdout)
    assert status["model"]["exists"] and status["model"]["unchanged"]
    res = r.invoke(app, ["load", "model", "m.safetensors"])
    assert res.exit_code == 0 and "safetensors" in res.stdout
    assert r.invoke(app, ["load", "clear"]).exit_code == 0
    assert "nothing loaded" in r.invoke(app, ["load", "status"]).stdout
    bad = r.invoke(app, ["load", "model", "t.csv"])
    assert bad.exit_code == 1 and "error:" in bad.output
    assert r.invoke(app, ["load", "data", "missing"]).exit_code == 1
    assert r.invoke(app, ["analyze", "model"]).exit_code == 1  # nothing loaded, no path


def test_analyze_model_archive_and_state_dict(ws: Path) -> None:
    r = CliRunner()
    m = json.loads(r.invoke(app, ["analyze", "model", "m.axonml", "--json"]).stdout)
    assert m["totals"]["parameters"] == 12 * 256 + 256 + 256 * 128 + 128 + 128 * 3 + 3
    assert [x["output_shape"] for x in m["layers"]] == [[1, 256], [1, 128], [1, 3]]
    assert m["by_type"]["Linear"]["layers"] == 3 and m["by_type"]["Linear"]["share"] == pytest.approx(1.0)
    assert sum(x["share"] for x in m["layers"]) == pytest.approx(1.0)
    assert m["memory"]["param_bytes"] == 4 * m["totals"]["parameters"]
    s = json.loads(r.invoke(app, ["analyze", "model", "m.safetensors", "--json"]).stdout)
    assert s["rebuilt"] is False and s["totals"] == m["totals"]
    assert [x["type"] for x in s["layers"]] == ["Linear"] * 3  # inferred from 2-D weights
    shaped = json.loads(r.invoke(app, ["analyze", "model", "m.axonml", "--input-shape", "4,12", "--json"]).stdout)
    assert shaped["layers"][-1]["output_shape"] == [4, 3]
    assert r.invoke(app, ["analyze", "model", "m.axonml", "--input-shape", "1,5"]).exit_code == 1
    assert r.invoke(app, ["analyze", "model", "m.axonml", "--input-shape", "x"]).exit_code == 2


def test_analyze_data_and_recommendations_cite_numbers(ws: Path) -> None:
    r = CliRunner()
    d = json.loads(r.invoke(app, ["analyze", "data", "imgs", "--json"]).stdout)
    assert d["class_counts"] == {"cat": 9, "dog": 3, "eel": 4} and d["imbalance_ratio"] == pytest.approx(3.0)
    r.invoke(app, ["load", "both", "m.axonml", "imgs"])
    both = json.loads(r.invoke(app, ["analyze", "both", "--json"]).stdout)
    metrics = {x["metric"]: x for x in both["recommendations"]}
    imb = metrics["imbalance_ratio"]
    assert imb["value"] == pytest.approx(3.0) and "3.00 > 2" in imb["text"]
    mean = d["pixel_stats"]["mean"]
    assert "0-255 scale" in metrics["pixel_mean"]["text"] and f"{mean[0]:.1f}" in metrics["pixel_mean"]["text"]
    conc = metrics["parameter_concentration_pct"]
    assert f"{conc['value']:.1f}% of parameters" in conc["text"] and "Linear" in conc["text"]
    assert "per sample" in metrics["params_per_sample"]["text"]
    csv = json.loads(r.invoke(app, ["analyze", "data", "t.csv", "--json"]).stdout)
    assert csv["format"] == "csv" and csv["imbalance_ratio"] == pytest.approx(1.0)
    text = r.invoke(app, ["analyze", "data", "t.csv"]).stdout
    assert "feature standard deviations differ" in text  # std of b is 10^4 times the std of a


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.svgs = 0
        self.external: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.svgs += tag == "svg"
        self.scripts += tag == "script"
        self.external += [v or "" for k, v in attrs if k in ("src", "href") and v and not v.startswith("#")]


def test_report_formats_and_html_is_self_contained(ws: Path) -> None:
    r = CliRunner()
    r.invoke(app, ["load", "both", "m.axonml", "imgs"])
    for fmt in ("json", "markdown", "text"):
        res = r.invoke(app, ["analyze", "report", "--format", fmt, "-o", f"r.{fmt}"])
        assert res.exit_code == 0, res.output
    assert json.loads((ws / "r.json").read_text())["data"]["num_classes"] == 3
    assert "| layers.3 | Linear | 32,896 |" in (ws / "r.markdown").read_text()
    assert "Recommendations" in (ws / "r.text").read_text()
    assert r.invoke(app, ["analyze", "report", "--format", "pdf"]).exit_code == 2
    proc = _run("analyze", "report", "--format", "html", "-o", str(ws / "r.html"))  # a real subprocess
    assert proc.returncode == 0, proc.stderr
    html = (ws / "r.html").read_text()
    p = _Html()
    p.feed(html)
    assert p.svgs == 2 and not p.external and p.scripts == 0
    assert 'id="chart-params"' in html and 'id="chart-classes"' in html and "WeightedRandomSampler" in html
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not installed: the HTML was checked by parsing only")
    png = ws / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={ws / 'ud'}",
                    f"--screenshot={png}", "--window-size=1200,1600", f"file://{ws / 'r.html'}"],
                   capture_output=True, timeout=60)
    from PIL import Image

    assert png.is_file()
    with Image.open(png) as im:
        assert len(im.convert("RGB").getcolors(maxcolors=1 << 20) or [0, 0]) > 1


def test_subprocess_on_shared_mnist(shared_data: Path, tmp_path: Path) -> None:
    mnist = shared_data / "mnist"
    if not mnist.is_dir():
        pytest.skip("no mnist in shared data")
    model = build_vision_model("mlp", in_features=784, num_classes=10)
    ModelArchive.save(tmp_path / "mnist.axonml", model, builder=BUILDER,
                      config={"model_name": "mlp", "in_features": 784, "num_classes": 10},
                      metadata={"input_shape": [784]})
    env_cwd = {"cwd": str(tmp_path)}
    load = subprocess.run([sys.executable, "-m", "axonml.cli.main", "load", "both", "mnist.axonml", str(mnist)],
                          capture_output=True, text=True, **env_cwd)  # type: ignore[call-overload]
    assert load.returncode == 0, load.stderr
    res = subprocess.run([sys.executable, "-m", "axonml.cli.main", "analyze", "both", "--json"],
                         capture_output=True, text=True, **env_cwd)  # type: ignore[call-overload]
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["data"]["format"] == "idx" and out["data"]["num_classes"] == 10
    assert out["data"]["imbalance_ratio"] == pytest.approx(max(out["data"]["class_counts"].values())
                                                          / min(out["data"]["class_counts"].values()))
    pix = {x["metric"]: x for x in out["recommendations"]}["pixel_mean"]
    assert pix["value"][0] == pytest.approx(out["data"]["pixel_stats"]["mean"][0], abs=0.05)
    assert out["model"]["layers"][-1]["output_shape"] == [1, 10]
