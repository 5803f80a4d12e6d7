"""The layering of DESIGN.md / ARCHITECTURE.md, checked by reading every module's imports.

Each layer imports only from layers below it (and from itself). CuPy is imported
only inside functions of ``axonml.backend``, so ``import axonml`` never loads it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "axonml"

# Top-level parts of the package and their layer (see ARCHITECTURE.md). A module may
# import from its own part and from parts of a strictly lower layer; ``errors`` is
# the floor that everything may use. Facades (autograd, linalg, cuda) present the
# L0-L2 machinery under PyTorch's names and sit just above ops.
LAYERS: dict[str, float] = {
    "errors": -1, "_version": -1,
    "backend": 0,
    "core": 1,
    "ops": 2,
    "autograd": 2.5, "linalg": 2.5, "cuda": 2.5,
    "nn": 3, "optim": 3, "data": 3, "amp": 3,
    "graph": 4, "io": 4, "onnx": 4, "quant": 4, "profile": 4, "distributed": 4, "verify": 4,
    "vision": 5, "audio": 5, "text": 5, "llm": 5, "hub": 5,
    "apps": 6, "cli": 6, "tui": 6, "serve": 6, "server": 6,
}
# The root package (axonml/__init__.py) gathers everything: nothing inside may import it.
ROOT_LAYER = 100.0
CUPY = ("cupy", "cupyx")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module under src/axonml."""
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in module ``name``, including those inside functions."""
    tree = ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if _is_package(name) else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # ``from . import forward_ad`` imports a submodule
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else target))
    return found


def _part(module: str) -> str | None:
    """The top-level part of an axonml module (``axonml.core.tensor`` -> ``core``); None for the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _layer(module: str) -> float:
    part = _part(module)
    if part is None:
        return ROOT_LAYER
    if part not in LAYERS:
        raise KeyError(part)
    return LAYERS[part]


def test_every_part_has_a_layer() -> None:
    unknown = sorted({p for m in MODULES if (p := _part(m)) is not None and p not in LAYERS})
    assert not unknown, f"new top-level part(s) {unknown}: give each a layer in LAYERS (tests/test_layering.py) " \
                        "and in ARCHITECTURE.md"


def test_no_layer_imports_a_higher_one() -> None:
    bad = []
    for name in MODULES:
        if _part(name) is None or _part(name) not in LAYERS:
            continue  # the root may import anything; unknown parts fail the test above
        own, own_part = _layer(name), _part(name)
        for line, target in _imports(name):
            if target != "axonml" and not target.startswith("axonml."):
                continue
            t_part = _part(target)
            if t_part == own_part:
                continue
            t_layer = _layer(target) if t_part in LAYERS or t_part is None else ROOT_LAYER
            if t_layer >= own:
                what = "the axonml root package" if t_part is None else f"{target} (layer {t_layer:g})"
                bad.append(f"{MODULES[name].relative_to(SRC)}:{line}: {name} (layer {own:g}) imports {what}")
    assert not bad, "layering violations (a layer may import only from lower layers):\n" + "\n".join(bad)


def test_backend_imports_only_errors() -> None:
    bad = [
        f"{name}:{line} imports {target}"
        for name in MODULES
        if _part(name) == "backend"
        for line, target in _imports(name)
        if target.startswith("axonml.") and _part(target) not in ("backend", "errors")
    ]
    assert not bad, "the backend (L0) may import only axonml.errors:\n" + "\n".join(bad)


def _cupy_imports(name: str) -> list[tuple[int, bool]]:
    """(line, at module level?) for each import of CuPy in module ``name``, static or by importlib/__import__."""
    tree = ast.parse(MODULES[name].read_text())
    found: list[tuple[int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            names: list[str] = []
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and not child.level:
                names = [child.module or ""]
            elif isinstance(child, ast.Call) and child.args and isinstance(child.args[0], ast.Constant):
                fn = child.func
                fname = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                if fname in ("import_module", "__import__") and isinstance(child.args[0].value, str):
                    names = [child.args[0].value]
            if any(n.split(".")[0] in CUPY for n in names):
                found.append((getattr(child, "lineno", 0), not in_function))
            visit(child, inner)

    visit(tree, False)
    return found


def test_cupy_is_imported_only_inside_backend_functions() -> None:
    bad = []
    for name in MODULES:
        for line, top_level in _cupy_imports(name):
            if _part(name) != "backend":
                bad.append(f"{MODULES[name].relative_to(SRC)}:{line}: CuPy imported outside axonml.backend")
            elif top_level:
                bad.append(f"{MODULES[name].relative_to(SRC)}:{line}: CuPy imported at module level")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_relative_imports() -> None:
    # guards the test itself: core.function imports core.tensor and the errors module
    targets = {t for _, t in _imports("axonml.core.function")}
    assert "axonml.core.tensor" in targets
    assert "axonml.errors" in targets


@pytest.mark.parametrize("stub", [False, True], ids=["plain", "with-cupy-on-path"])
def test_import_axonml_does_not_load_cupy_or_torch(tmp_path: Path, stub: bool) -> None:
    """A CPU session (import, ops, backward) never imports CuPy or PyTorch.

    With ``stub``, an importable fake ``cupy`` package shadows any real one, so an
    import attempt would succeed and show up in ``sys.modules`` even on a machine
    without CuPy.
    """
    env = dict(os.environ)
    if stub:
        for mod in CUPY:
            (tmp_path / mod).mkdir()
            (tmp_path / mod / "__init__.py").write_text("")
        env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(SRC), env.get("PYTHONPATH", "")])
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    code = textwrap.dedent(
        """
        import sys
        import axonml as ax
        x = ax.tensor([1.0, 2.0, 3.0], requires_grad=True)
        (x.exp() * 2).sum().backward()
        assert x.grad is not None
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("cupy", "cupyx", "torch"))
        print("LOADED", loaded)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout, f"import axonml loaded optional packages: {r.stdout.strip()}"
