"""Every public op has a test: the registry check of DESIGN.md.

An op counts as tested when its name is the ``name`` of an ``OpSpec`` in some
module-level ``SPECS`` list (the generic harness, tests/harness.py), or is listed
in a module-level ``NONDIFF_NAMES`` of some test module (ops without gradients,
such as creation functions or comparisons, tested by plain tests there). An
alias (the same function object under another name, e.g. ``subtract`` for
``sub``) is covered by its original. Non-op utilities are in ``ALLOWLIST``.

It also keeps ARCHITECTURE.md and docs/autograd.md honest about the primitives:
each one is listed, and each differentiable one has a forward-mode rule.
"""

from __future__ import annotations

import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import axonml as ax

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent

# Public callables of ``axonml`` that are not ops: configuration, queries, seeding.
ALLOWLIST = {
    "get_default_dtype", "set_default_dtype", "promote_types", "result_type", "finfo", "iinfo",
    "is_tensor", "is_grad_enabled", "is_inference_mode_enabled",
    "manual_seed", "seed", "initial_seed", "get_rng_state", "set_rng_state",
}


def _load(path: Path) -> ModuleType:
    """Import a test module under a private name (tests/ is on sys.path via conftest).

    Its own folder goes on sys.path too, as pytest's rootdir-relative import does, so
    helper modules beside it (tests/optim/optimhelp.py, say) import as they do under pytest.
    """
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    rel = path.relative_to(TESTS).with_suffix("")
    name = "_registry_" + "_".join(rel.parts)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _collect() -> tuple[dict[str, list[str]], dict[str, str]]:
    """(covered name -> test files naming it, test file -> import error) over tests/**/test_*.py."""
    covered: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for path in sorted(TESTS.rglob("test_*.py")):
        if path.resolve() == Path(__file__).resolve():
            continue
        rel = str(path.relative_to(ROOT))
        try:
            mod = _load(path)
        except Exception as e:  # a broken test module is reported, not silently skipped
            errors[rel] = f"{type(e).__name__}: {e}"
            continue
        names = [getattr(s, "name", None) for s in getattr(mod, "SPECS", ())]
        names += list(getattr(mod, "NONDIFF_NAMES", ()))
        for n in names:
            if isinstance(n, str):
                covered.setdefault(n, []).append(rel)
    return covered, errors


def public_ops() -> dict[str, Any]:
    """Name -> function: ``axonml.ops.__all__``, the public functions at ``axonml``'s top level,
    and ``axonml.linalg``'s functions as ``linalg.<name>``."""
    def is_op(obj: Any) -> bool:  # functions, not classes (Generator, dtypes) or objects
        return callable(obj) and not inspect.isclass(obj)

    ops: dict[str, Any] = {n: getattr(ax, n) for n in ax.ops.__all__ if is_op(getattr(ax, n))}
    for n, obj in vars(ax).items():
        if not n.startswith("_") and n not in ops and (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
            ops[n] = obj
    for n in getattr(ax.linalg, "__all__", ()):
        if is_op(getattr(ax.linalg, n)):
            ops[f"linalg.{n}"] = getattr(ax.linalg, n)
    return ops


@pytest.fixture(scope="module")
def collected() -> tuple[dict[str, list[str]], dict[str, str]]:
    return _collect()


def test_test_modules_import(collected: tuple[dict[str, list[str]], dict[str, str]]) -> None:
    _, errors = collected
    assert not errors, "test modules that fail to import:\n" + "\n".join(f"  {k}: {v}" for k, v in errors.items())


def test_every_public_op_has_a_test(collected: tuple[dict[str, list[str]], dict[str, str]]) -> None:
    covered, _ = collected
    ops = public_ops()
    tested_fns = {id(ops[n]) for n in ops if n in covered or n.replace("linalg.", "linalg_") in covered}
    missing = sorted(
        n for n, fn in ops.items()
        if n not in covered and n.replace("linalg.", "linalg_") not in covered and n not in ALLOWLIST
        and id(fn) not in tested_fns  # an alias of a tested function
    )
    assert not missing, (
        f"{len(missing)} public op(s) have no test. Add an OpSpec with this name to a module-level SPECS list "
        "(tests/harness.py), or, for an op without gradients, the name to a module-level NONDIFF_NAMES list "
        "in the test module that tests it (linalg functions: 'linalg.<name>'):\n  " + ", ".join(missing)
    )


def test_allowlist_names_exist() -> None:
    # an allowlist entry for a name that does not exist hides nothing; keep the list exact
    ops = public_ops()
    stale = sorted(n for n in ALLOWLIST if n not in ops)
    assert not stale, f"ALLOWLIST names that are not public axonml functions (remove them): {stale}"


def _primitives() -> dict[str, Any]:
    from axonml.core.function import Primitive

    found: dict[str, Any] = {}
    prims = importlib.import_module("axonml.core.prims")
    for info in pkgutil.iter_modules(prims.__path__):
        mod = importlib.import_module(f"axonml.core.prims.{info.name}")
        for name, cls in vars(mod).items():
            if (inspect.isclass(cls) and issubclass(cls, Primitive) and cls.__module__ == mod.__name__
                    and not name.startswith("_")):
                found[f"{info.name}.{name}"] = cls
    return found


def test_every_primitive_is_listed_in_architecture_md() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text()
    start = text.find("## The primitives")
    assert start >= 0, "ARCHITECTURE.md has no '## The primitives' section"
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    missing = sorted(q for q in _primitives() if f"`{q.split('.')[1]}`" not in section)
    assert not missing, f"primitives not listed (with a reason) in ARCHITECTURE.md: {missing}"


def test_every_differentiable_primitive_has_a_forward_rule() -> None:
    # docs/autograd.md promises forward mode for every differentiable primitive
    missing = sorted(q for q, cls in _primitives().items() if cls.differentiable and getattr(cls, "jvp", None) is None)
    assert not missing, f"differentiable primitives without a jvp rule (fix them or docs/autograd.md): {missing}"
