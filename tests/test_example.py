"""The README's set-up commands, its tour, the docs' examples, and examples/fit.py run as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_fit_example_learns_the_spiral() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fit.py"), "--steps", "150"],
        capture_output=True, text=True, env=_env(), timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    losses = [float(v) for v in re.findall(r"^step\s+\d+\s+loss (\S+)$", r.stdout, flags=re.M)]
    assert len(losses) >= 5, r.stdout
    assert losses[-1] < 0.5 * losses[0], f"loss did not go down: {losses}"
    final = re.search(r"train accuracy (\S+)\s+test accuracy (\S+)\s+\(chance (\S+)\)", r.stdout)
    assert final is not None, r.stdout
    train_acc, test_acc, chance = map(float, final.groups())
    assert train_acc > chance + 0.3, r.stdout
    assert test_acc > chance + 0.25, r.stdout


def _readme_tour() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"## Tour.*?```python\n(.*?)```", text, flags=re.S)
    assert m is not None, "README.md has no '## Tour' section with a python code block"
    return m.group(1)


def test_readme_tour_runs() -> None:
    r = subprocess.run([sys.executable, "-c", _readme_tour()], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_readme_commands_match_ci() -> None:
    # the README's set-up commands come first, and .ci/run runs the README's test command
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)
    assert block is not None
    lines = [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines == [
        "pip install -e '.[cli,examples]' && axonml train --model lenet --dataset mnist --epochs 1",
        "pip install -e '.[dev]' && python -m pytest -m \"not slow and not gpu\"",
    ], lines
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python -m pytest -m "not slow and not gpu"' in ci


def _doc_blocks() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted((ROOT / "docs").glob("*.md")):
        for i, m in enumerate(re.finditer(r"```python\n(.*?)```", path.read_text(), flags=re.S)):
            out.append((path.name, i, m.group(1)))
    return out


@pytest.mark.parametrize(("doc", "index", "code"), [pytest.param(*b, id=f"{b[0]}-{b[1]}") for b in _doc_blocks()])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the anomaly example divides by zero on purpose
def test_docs_code_blocks_run(doc: str, index: int, code: str) -> None:
    # each python block in docs/ is a self-contained, checked example
    exec(compile(code, f"docs/{doc}[block {index}]", "exec"), {"__name__": f"docs_{index}"})


def _resolve(root: object, dotted: str) -> bool:
    """Whether ``axonml.<dotted>`` exists, importing subpackages on the way (``axonml.vision`` is not
    imported by ``import axonml``, as torchvision is not by ``import torch``)."""
    import importlib

    obj = root
    path = "axonml"
    for part in dotted.split("."):
        path = f"{path}.{part}"
        if not hasattr(obj, part):
            try:
                obj = importlib.import_module(path)
            except ImportError:
                return False
            continue
        obj = getattr(obj, part)
    return True


FILE_SUFFIXES = {"toml", "json", "jsonl"}


def test_docs_name_only_existing_api() -> None:
    # every `ax.<name>` and every `x.<method>` that the docs mention exists
    import axonml as ax

    files = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", *sorted((ROOT / "docs").glob("*.md"))]
    missing = []
    for path in files:
        text = path.read_text()
        for m in re.finditer(r"\b(?:ax|axonml)\.([A-Za-z_][\w.]*\w)", text):
            if m.group(1) in FILE_SUFFIXES:  # a file name such as axonml.toml, not an attribute
                continue
            if not _resolve(ax, m.group(1)):
                missing.append(f"{path.name}: ax.{m.group(1)}")
        for m in re.finditer(r"`x\.([A-Za-z_]\w*)", text):
            if not hasattr(ax.Tensor, m.group(1)):
                missing.append(f"{path.name}: Tensor.{m.group(1)}")
    assert not missing, "the docs mention names that do not exist:\n" + "\n".join(sorted(set(missing)))
