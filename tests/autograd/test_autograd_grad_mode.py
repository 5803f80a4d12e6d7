"""Grad modes: context managers, decorators, and isolation across threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading

import pytest

import axonml as ax


def _records() -> bool:
    x = ax.tensor([1.0], requires_grad=True)
    return (x * 2).requires_grad


def test_no_grad_context() -> None:
    assert ax.is_grad_enabled()
    with ax.no_grad():
        assert not ax.is_grad_enabled()
        assert not _records()
    assert ax.is_grad_enabled() and _records()


def test_enable_grad_inside_no_grad() -> None:
    with ax.no_grad():
        with ax.enable_grad():
            assert _records()
        assert not _records()


def test_set_grad_enabled_context_and_call() -> None:
    with ax.set_grad_enabled(False):
        assert not _records()
        with ax.set_grad_enabled(True):
            assert _records()
        assert not _records()
    assert _records()
    ax.set_grad_enabled(False)  # as a plain call it switches at once
    try:
        assert not ax.is_grad_enabled()
    finally:
        ax.set_grad_enabled(True)
    assert ax.is_grad_enabled()


def test_inference_mode() -> None:
    with ax.inference_mode():
        assert ax.is_inference_mode_enabled()
        assert not _records()
        with ax.inference_mode(False):
            assert not ax.is_inference_mode_enabled()
            assert _records()
    assert not ax.is_inference_mode_enabled() and _records()


@pytest.mark.parametrize(
    "make_mode",
    [lambda: ax.no_grad, ax.no_grad, lambda: ax.inference_mode, ax.inference_mode, lambda: ax.set_grad_enabled(False)],
    ids=["no_grad", "no_grad()", "inference_mode", "inference_mode()", "set_grad_enabled(False)"],
)
def test_modes_as_decorators(make_mode) -> None:
    # made inside the test: set_grad_enabled(False) switches the mode as soon as it is created
    @make_mode()
    def f() -> bool:
        return _records()

    assert ax.is_grad_enabled()
    assert f() is False
    assert ax.is_grad_enabled()  # the mode holds only inside the call


def test_enable_grad_decorator() -> None:
    @ax.enable_grad
    def f() -> bool:
        return _records()

    with ax.no_grad():
        assert f() is True
        assert not ax.is_grad_enabled()


def test_decorated_generator_only_inside_its_steps() -> None:
    @ax.no_grad()
    def gen():
        yield _records()
        yield _records()

    it = gen()
    assert next(it) is False
    assert ax.is_grad_enabled()  # between steps, the caller's mode
    assert next(it) is False


def test_mode_restored_after_exception() -> None:
    with pytest.raises(RuntimeError), ax.no_grad():
        raise RuntimeError("x")
    assert ax.is_grad_enabled()


def test_modes_are_per_thread() -> None:
    in_thread_entered = threading.Event()
    main_checked = threading.Event()
    seen = {}

    def worker() -> None:
        with ax.no_grad():
            in_thread_entered.set()
            main_checked.wait(5)
            seen["worker"] = _records()

    t = threading.Thread(target=worker)
    t.start()
    assert in_thread_entered.wait(5)
    seen["main"] = _records()  # the worker is inside no_grad right now
    main_checked.set()
    t.join(5)
    assert seen == {"main": True, "worker": False}


def test_new_thread_starts_with_grad_enabled() -> None:
    seen = {}

    def worker() -> None:
        seen["enabled"] = ax.is_grad_enabled()

    with ax.no_grad():
        t = threading.Thread(target=worker)
        t.start()
        t.join(5)
    assert seen["enabled"] is True


def test_modes_are_per_asyncio_task() -> None:
    async def under_no_grad(entered: asyncio.Event, release: asyncio.Event) -> bool:
        with ax.no_grad():
            entered.set()
            await release.wait()  # the other task runs while this one is inside no_grad
            return _records()

    async def plain(entered: asyncio.Event, release: asyncio.Event) -> bool:
        await entered.wait()
        result = _records()
        release.set()
        return result

    async def main() -> tuple[bool, bool]:
        entered, release = asyncio.Event(), asyncio.Event()
        return await asyncio.gather(under_no_grad(entered, release), plain(entered, release))

    assert asyncio.run(main()) == [False, True]


def test_decorated_coroutine() -> None:
    @ax.no_grad()
    async def inner() -> bool:
        await asyncio.sleep(0)
        return _records()

    async def main() -> tuple[bool, bool]:
        return await inner(), _records()

    assert asyncio.run(main()) == (False, True)


def test_backward_under_no_grad_still_works() -> None:
    x = ax.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    with ax.no_grad():
        y.backward()
    assert x.grad.tolist() == [2.0, 4.0]
