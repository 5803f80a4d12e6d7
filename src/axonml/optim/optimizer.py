"""The ``Optimizer`` base class, as ``torch.optim.Optimizer``.

Parameter groups, per-parameter ``state``, ``state_dict``/``load_state_dict`` in
PyTorch's format (parameters as integer ids, state keyed by those ids), step hooks,
``zero_grad``. Subclasses implement ``step`` on the raw arrays of the parameters
(``p._data`` with ``xp = p._device.xp``, in place, reusing scratch buffers), which
is one implementation for NumPy and CuPy and allocates nothing after the first step.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from copy import deepcopy
from typing import Any, ClassVar

import numpy as np

from ..backend import CPU, move_array
from ..backend.graphs import current_capture
from ..core import dtypes as _dt
from ..core.grad_mode import enable_grad, no_grad
from ..core.tensor import Tensor
from ..errors import GraphCaptureError
from ._helpers import Scratch

__all__ = ["Optimizer", "register_optimizer_step_post_hook", "register_optimizer_step_pre_hook", "required"]


class _RequiredParameter:
    """Marks a default that every parameter group must give (as ``torch.optim.optimizer.required``)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class RemovableHandle:
    """Removes the hook it was returned for: ``handle.remove()``."""

    _next_id = itertools.count()

    def __init__(self, hooks: dict[int, Any]) -> None:
        self._hooks = hooks
        self.id = next(RemovableHandle._next_id)

    def remove(self) -> None:
        self._hooks.pop(self.id, None)

    def __enter__(self) -> RemovableHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


_GLOBAL_PRE_HOOKS: dict[int, Callable[..., Any]] = {}
_GLOBAL_POST_HOOKS: dict[int, Callable[..., Any]] = {}


def register_optimizer_step_pre_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Run ``hook(optimizer, args, kwargs)`` before every optimizer's ``step``."""
    handle = RemovableHandle(_GLOBAL_PRE_HOOKS)
    _GLOBAL_PRE_HOOKS[handle.id] = hook
    return handle


def register_optimizer_step_post_hook(hook: Callable[..., Any]) -> RemovableHandle:
    """Run ``hook(optimizer, args, kwargs)`` after every optimizer's ``step``."""
    handle = RemovableHandle(_GLOBAL_POST_HOOKS)
    _GLOBAL_POST_HOOKS[handle.id] = hook
    return handle


_SET_ERROR = (
    "optimizer parameters need to be organized in ordered collections, but the ordering of tensors in sets "
    "will change between runs. Please use a list instead."
)


def _hooked(step: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a subclass's ``step``: pre hooks, the step under ``no_grad``, post hooks."""

    @functools.wraps(step)
    def wrapper(self: Optimizer, *args: Any, **kwargs: Any) -> Any:
        pre = self._optimizer_step_pre_hooks
        if pre or _GLOBAL_PRE_HOOKS:
            for hook in itertools.chain(list(_GLOBAL_PRE_HOOKS.values()), list(pre.values())):
                result = hook(self, args, kwargs)
                if result is not None:
                    if not (isinstance(result, tuple) and len(result) == 2):
                        raise RuntimeError(
                            f"an optimizer step pre-hook must return None or (args, kwargs), got {result!r}"
                        )
                    args, kwargs = result
        capture = current_capture()
        if capture is None:
            with no_grad():
                out = step(self, *args, **kwargs)
        else:
            out = _captured_step(self, capture, step, args, kwargs)
        self._opt_called = True  # read by LR schedulers to warn about a wrong call order
        post = self._optimizer_step_post_hooks
        if post or _GLOBAL_POST_HOOKS:
            for hook in itertools.chain(list(post.values()), list(_GLOBAL_POST_HOOKS.values())):
                hook(self, args, kwargs)
        return out

    wrapper._hooked = True  # type: ignore[attr-defined]
    return wrapper


def _captured_step(opt: Optimizer, capture: Any, step: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``step`` inside a CUDA graph capture: only for rules whose every per-step number is on the device or
    fixed. ``lr`` is read from the device (``_captured``), so schedulers work; the other hyperparameters are
    frozen into the graph, and a replay refuses to run once they change."""
    name = type(opt).__name__
    if not type(opt)._capture_safe:
        raise GraphCaptureError(
            f"{name}.step cannot be captured in a CUDA graph: its step count lives on the host, so replays would "
            "reuse the captured bias corrections and never advance it (SGD and Lion can be captured)"
        )
    n_state = sum(len(s) for s in opt.state.values())
    opt._host_lr_captured = False  # set by an update that took lr as a host number (a non-fused dtype)
    with no_grad():
        out = step(opt, *args, **kwargs)
    if sum(len(s) for s in opt.state.values()) != n_state:
        raise GraphCaptureError(
            f"{name} created its state (e.g. momentum buffers) inside the CUDA graph capture, so the graph would "
            "replay the first step's rule: run a few eager steps before capturing"
        )
    lr_on_device = not opt._host_lr_captured  # then a replay reads the current lr: schedulers work
    frozen = _hyperparameters(opt, lr_on_device)

    def check() -> None:
        now = _hyperparameters(opt, lr_on_device)
        if now != frozen:
            raise GraphCaptureError(
                f"{name}'s hyperparameters changed since the CUDA graph was captured ({frozen} -> {now}); the graph "
                "still holds the old values: reset() it and capture again"
            )

    capture.add_guard(check)
    return out


def _hyperparameters(opt: Optimizer, lr_on_device: bool) -> list[tuple[tuple[str, Any], ...]]:
    """The numbers of each parameter group that a captured step has frozen into its kernels."""
    skip = ("params", "lr") if lr_on_device else ("params",)
    return [tuple((k, v) for k, v in sorted(g.items()) if k not in skip and isinstance(v, (int, float, bool, tuple)))
            for g in opt.param_groups]


class Optimizer:
    """Base class of all optimizers (``torch.optim.Optimizer``).

    Args:
        params: an iterable of tensors, of ``(name, tensor)`` pairs, or of dicts
            (parameter groups: ``{"params": [...], "lr": ...}``) whose missing
            hyperparameters are filled from ``defaults``.
        defaults: the default hyperparameters of a group.

    ``state`` maps each parameter to a dict of its optimizer state (tensors and
    numbers). ``state_dict()`` returns it keyed by integer ids (the position of the
    parameter across the groups), as PyTorch does, so a saved state resumes a run
    bit for bit and moves between axonml and PyTorch.
    """

    defaults: dict[str, Any]
    state: defaultdict[Any, dict[str, Any]]
    param_groups: list[dict[str, Any]]
    # whether ``step`` may run inside a CUDA graph capture (no host-side per-step numbers)
    _capture_safe: ClassVar[bool] = False
    _host_lr_captured = False  # a captured step took lr as a host number: its replays must keep that lr

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "_hooked", False):
            cls.step = _hooked(step)  # type: ignore[method-assign]

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._init_runtime()
        if isinstance(params, Tensor):
            raise TypeError(
                "params given to the optimizer should be an iterable of Tensors or dicts, but got a Tensor"
            )
        if isinstance(params, set | frozenset):
            raise TypeError(_SET_ERROR)
        self.state = defaultdict(dict)
        self.param_groups = []
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def _init_runtime(self) -> None:
        """Attributes that are not state: hooks and scratch buffers (rebuilt after unpickling)."""
        self._optimizer_step_pre_hooks: dict[int, Callable[..., Any]] = {}
        self._optimizer_step_post_hooks: dict[int, Callable[..., Any]] = {}
        self._optimizer_load_state_dict_pre_hooks: dict[int, Callable[..., Any]] = {}
        self._optimizer_load_state_dict_post_hooks: dict[int, Callable[..., Any]] = {}
        self._opt_called = False
        self._scratch = Scratch()

    # ----- pickling ----------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    def __repr__(self) -> str:
        text = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"

    # ----- parameter groups ----------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (with its own hyperparameters) to ``param_groups``."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set | frozenset):
            raise TypeError(_SET_ERROR)
        else:
            params = list(params)
        names = [p[0] for p in params if isinstance(p, tuple)]
        params = [p[1] if isinstance(p, tuple) else p for p in params]
        param_group["params"] = params
        if names:
            if len(names) != len(params):
                raise ValueError("all optimizer params should be with/without names. Some param names are missing")
            param_group["param_names"] = names
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not (p.is_leaf or p.retains_grad):
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        ids = [id(p) for p in params]
        if len(ids) != len(set(ids)):
            raise ValueError("optimizer contains a parameter group with duplicate parameters")
        seen: set[int] = set()
        for group in self.param_groups:
            seen.update(id(p) for p in group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                which = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    f"all optimizer param groups should be with/without names. cannot add param group {which} "
                    "to the optimizer"
                )
        if not seen.isdisjoint(ids):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    # ----- gradients ----------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of all optimized tensors: to ``None`` (default) or to zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                g = p._grad
                if g is None:
                    continue
                if set_to_none:
                    p._grad = None
                else:
                    if g._grad_fn is not None:
                        g.detach_()
                    else:
                        g.requires_grad_(False)
                    g.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; subclasses implement it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step()")

    @staticmethod
    def _eval_closure(closure: Callable[[], Any] | None) -> Any:
        """The closure's loss, computed with gradients enabled (``step`` runs under ``no_grad``)."""
        if closure is None:
            return None
        with enable_grad():
            return closure()

    @staticmethod
    def _with_grads(group: dict[str, Any]) -> Iterator[tuple[Any, Any, Any, Any]]:
        """``(param, device, param array, grad array)`` for each parameter of ``group`` that has a gradient."""
        for p in group["params"]:
            if p._grad is not None:
                yield p, p._device, p._data, p._grad._data

    # ----- hooks --------------------------------------------------------------------------
    def register_step_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """``hook(optimizer, args, kwargs) -> None | (args, kwargs)`` runs before each ``step``."""
        handle = RemovableHandle(self._optimizer_step_pre_hooks)
        self._optimizer_step_pre_hooks[handle.id] = hook
        return handle

    def register_step_post_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """``hook(optimizer, args, kwargs)`` runs after each ``step``."""
        handle = RemovableHandle(self._optimizer_step_post_hooks)
        self._optimizer_step_post_hooks[handle.id] = hook
        return handle

    def register_load_state_dict_pre_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """``hook(optimizer, state_dict) -> None | state_dict`` runs before ``load_state_dict``."""
        handle = RemovableHandle(self._optimizer_load_state_dict_pre_hooks)
        self._optimizer_load_state_dict_pre_hooks[handle.id] = hook
        return handle

    def register_load_state_dict_post_hook(self, hook: Callable[..., Any]) -> RemovableHandle:
        """``hook(optimizer)`` runs after ``load_state_dict``."""
        handle = RemovableHandle(self._optimizer_load_state_dict_post_hooks)
        self._optimizer_load_state_dict_post_hooks[handle.id] = hook
        return handle

    # ----- state dict ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {id: {...}}, "param_groups": [{..., "params": [ids]}]}`` in PyTorch's format.

        Ids number the parameters in order across the groups. As in PyTorch the
        state's tensors are the live ones, not copies: save (or ``deepcopy``) the
        dict before stepping again if you keep it in memory.
        """
        mapping: dict[int, int] = {}
        groups = []
        start = 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                mapping.setdefault(id(p), i)
            packed["params"] = [mapping[id(p)] for p in group["params"]]
            start += len(packed["params"])
            groups.append(packed)
        state = {(mapping[id(k)] if isinstance(k, Tensor) else k): v for k, v in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (ours or PyTorch's, tensors as axonml, NumPy or torch).

        Floating-point state tensors are copied to each parameter's dtype and
        device; ``step`` counters are kept as saved. Hyperparameters come from the
        saved groups, parameters from this optimizer's groups, matched in order.
        """
        state_dict = dict(state_dict)
        for hook in list(self._optimizer_load_state_dict_pre_hooks.values()):
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter group(s), the optimizer has {len(groups)}"
            )
        for i, (g, s) in enumerate(zip(groups, saved_groups)):
            if len(g["params"]) != len(s["params"]):
                raise ValueError(
                    f"loaded state dict's parameter group {i} has {len(s['params'])} parameter(s), "
                    f"the optimizer's has {len(g['params'])}"
                )
        id_map = dict(
            zip(
                itertools.chain.from_iterable(s["params"] for s in saved_groups),
                itertools.chain.from_iterable(g["params"] for g in groups),
            )
        )
        state: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
        for k, v in state_dict["state"].items():
            if k in id_map:
                param = id_map[k]
                state[param] = _cast_state(param, v)
            else:
                state[k] = v
        new_groups = []
        for g, s in zip(groups, saved_groups):
            s["params"] = g["params"]
            if "param_names" in g and "param_names" not in s:
                s["param_names"] = g["param_names"]
            new_groups.append(s)
        self.state = state
        self.param_groups = new_groups
        for group in self.param_groups:
            self._fill_group(group)
        for hook in list(self._optimizer_load_state_dict_post_hooks.values()):
            hook(self)

    def _fill_group(self, group: dict[str, Any]) -> None:
        """Give a loaded group the hyperparameters it lacks (a state saved by an older version)."""
        for name, default in self.defaults.items():
            if default is not required:
                group.setdefault(name, default)


# ----- loading state -------------------------------------------------------------------------
def _as_array(value: Any) -> Any:
    """A tensor-like from a foreign state dict (NumPy array, torch tensor) as a NumPy array, else None."""
    if isinstance(value, np.ndarray):
        return value
    mod = type(value).__module__ or ""
    if mod.startswith("torch") and hasattr(value, "detach"):
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            return t.float().numpy().astype(_dt.bfloat16.np)
        return t.numpy().copy()
    return None


# PyTorch keeps ``step`` as saved; we keep NAdam's ``mu_product`` too (PyTorch casts it to the
# parameter's dtype on load, which changes the rounding of the resumed run).
_SCALAR_KEYS = frozenset({"step", "mu_product"})


def _cast_state(param: Tensor, value: Any, key: Any = None) -> Any:
    """A copy of ``value`` with tensors moved to ``param``'s device (and dtype, if floating), as PyTorch."""
    if isinstance(value, dict):
        return {k: _cast_state(param, v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cast_state(param, v) for v in value)
    if isinstance(value, Tensor):
        arr, dev = value._data, value._device
    else:
        arr = _as_array(value)
        if arr is None:
            return value
        dev = CPU
    if key in _SCALAR_KEYS:  # scalar state keeps its saved dtype and device, so a resumed run is bit-exact
        return Tensor._make(arr.copy(), dev)
    target = param._device
    moved = move_array(arr, target)
    if param._data.dtype.kind in "fc" and moved.dtype != param._data.dtype:
        moved = moved.astype(param._data.dtype)
    elif moved is arr:  # never share memory with the dict being loaded
        moved = moved.copy()
    return Tensor._make(moved, target)
