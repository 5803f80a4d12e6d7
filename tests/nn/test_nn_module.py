"""nn.Module and the containers: registration, iteration, state dicts, conversions, hooks, repr, summary.

Compared with PyTorch where it has the same concept (keys, reprs, hook gradients).
"""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict
from typing import Any

import numpy as np
import pytest

import axonml as ax
from axonml import nn


@pytest.fixture
def torch() -> Any:
    return pytest.importorskip("torch")


def _np(t: Any) -> np.ndarray:
    return np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t)


def _from_torch(model: nn.Module, tmodel: Any) -> None:
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()})


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.scale = nn.Parameter(ax.ones(4))
        self.register_buffer("mean", ax.zeros(4))
        self.register_buffer("scratch", ax.zeros(2), persistent=False)

    def forward(self, x: ax.Tensor) -> ax.Tensor:
        return self.fc(x) * self.scale - self.mean


# ----- registration and iteration -------------------------------------------------------------
def test_setattr_registers_parameters_buffers_and_modules() -> None:
    b = Block()
    assert list(b._parameters) == ["scale"] and list(b._buffers) == ["mean", "scratch"]
    assert list(b._modules) == ["fc"]
    assert [n for n, _ in b.named_parameters()] == ["scale", "fc.weight", "fc.bias"]
    assert [n for n, _ in b.named_buffers()] == ["mean", "scratch"]
    assert isinstance(b.mean, nn.Buffer) and isinstance(b.scale, nn.Parameter)
    assert b.scale.requires_grad and not b.mean.requires_grad
    # a plain tensor assigned to a buffer's name stays a buffer (of kind Buffer), not a plain attribute
    b.mean = ax.ones(4)
    assert "mean" in b._buffers and isinstance(b.mean, nn.Buffer) and "mean" not in b.__dict__
    b.plain = ax.ones(1)  # a tensor under a new name is a plain attribute, as in PyTorch
    assert "plain" in b.__dict__ and "plain" not in b._buffers
    b.extra = nn.Buffer(ax.ones(1), persistent=False)
    assert "extra" in b._buffers and "extra" in b._non_persistent_buffers_set
    # reassigning a name to another kind moves it
    b.fc = nn.Parameter(ax.zeros(1))
    assert "fc" in b._parameters and "fc" not in b._modules
    del b.fc
    assert "fc" not in b._parameters and not hasattr(b, "fc")
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = b.nope


def test_registration_errors() -> None:
    m = nn.Module()
    with pytest.raises(KeyError, match="contain"):
        m.register_parameter("a.b", None)
    with pytest.raises(KeyError, match="empty"):
        m.register_buffer("", ax.zeros(1))
    with pytest.raises(TypeError, match="Parameter or None"):
        m.register_parameter("w", ax.zeros(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Tensor or None"):
        m.register_buffer("b", np.zeros(1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a Module"):
        m.add_module("x", 3)  # type: ignore[arg-type]
    m.thing = 1
    with pytest.raises(KeyError, match="already exists"):
        m.register_buffer("thing", ax.zeros(1))
    m.w = nn.Parameter(ax.zeros(1))
    with pytest.raises(TypeError, match="cannot assign 'Tensor' as parameter"):
        m.w = ax.zeros(1)
    with pytest.raises(TypeError, match="'Tensor' object to parameter"):
        m.register_parameter("v", nn.Parameter(ax.zeros(1)) * 2)  # type: ignore[arg-type]

    class Early(nn.Module):
        def __init__(self) -> None:
            self.w = nn.Parameter(ax.zeros(1))

    with pytest.raises(AttributeError, match=r"before Module\.__init__"):
        Early()


def test_shared_modules_and_parameters_come_once() -> None:
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.Identity(), shared)
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]
    assert len(list(model.named_modules(remove_duplicate=False))) == 4
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(model.named_parameters(remove_duplicate=False))) == 4
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as PyTorch: every path
    assert len(list(model.children())) == 2
    assert [n for n, _ in model.named_parameters(prefix="net")] == ["net.0.weight", "net.0.bias"]
    assert list(model.parameters(recurse=False)) == []


def test_get_submodule_parameter_buffer() -> None:
    model = nn.Sequential(OrderedDict(block=Block()))
    assert model.get_submodule("block.fc") is model.block.fc
    assert model.get_submodule("") is model
    assert model.get_parameter("block.fc.weight") is model.block.fc.weight
    assert model.get_buffer("block.mean") is model.block.mean
    with pytest.raises(AttributeError, match="has no attribute `nope`"):
        model.get_submodule("block.nope")
    with pytest.raises(AttributeError, match=r"is not an nn\.Module"):
        model.get_submodule("block.scale")
    with pytest.raises(AttributeError, match=r"is not an nn\.Parameter"):
        model.get_parameter("block.mean")


# ----- state dict ---------------------------------------------------------------------------
def test_state_dict_keys_detached_and_persistent_only() -> None:
    b = Block()
    sd = b.state_dict()
    assert list(sd) == ["scale", "mean", "fc.weight", "fc.bias"]
    assert all(not v.requires_grad and type(v) is ax.Tensor for v in sd.values())
    assert np.shares_memory(sd["fc.weight"].numpy(), b.fc.weight.detach().numpy())
    assert sd._metadata[""] == {"version": 1} and "fc" in sd._metadata
    kept = b.state_dict(keep_vars=True)
    assert kept["scale"] is b.scale


@pytest.mark.torch
def test_state_dict_keys_match_torch_for_nested_containers(torch: Any) -> None:
    tnn = torch.nn

    def build(lib: Any) -> Any:
        return lib.Sequential(OrderedDict(
            enc=lib.Sequential(lib.Linear(4, 3), lib.Flatten()),
            heads=lib.ModuleList([lib.Linear(3, 2), lib.Bilinear(3, 3, 1)]),
            extra=lib.ModuleDict({"proj": lib.Linear(3, 3, bias=False)}),
            plist=lib.ParameterList([lib.Parameter(lib.Linear(1, 2).weight.detach())]),
            pdict=lib.ParameterDict({"alpha": lib.Parameter(lib.Linear(1, 1).bias.detach())}),
        ))

    ours, theirs = build(nn), build(tnn)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    _from_torch(ours, theirs)  # loads (strict) with every key and shape matching
    ours.load_state_dict(theirs.state_dict())  # torch tensors themselves are accepted too (through __array__)
    for k, v in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[k].numpy(), v.numpy())


def test_load_state_dict_in_place_and_errors() -> None:
    src, dst = Block(), Block()
    with ax.no_grad():
        src.mean.fill_(3.0)
    w = dst.fc.weight
    res = dst.load_state_dict(src.state_dict())
    assert res.missing_keys == [] and res.unexpected_keys == [] and repr(res) == "<All keys matched successfully>"
    assert dst.fc.weight is w  # the same object: an optimizer holding it keeps working
    np.testing.assert_array_equal(w.detach().numpy(), src.fc.weight.detach().numpy())
    np.testing.assert_array_equal(dst.mean.numpy(), np.full(4, 3.0, np.float32))
    assert w.requires_grad

    sd = src.state_dict()
    del sd["fc.bias"]
    sd["bogus"] = ax.zeros(1)
    sd["fc.extra.x"] = ax.zeros(1)
    with pytest.raises(RuntimeError) as e:
        dst.load_state_dict(sd)
    msg = str(e.value)
    assert 'Missing key(s) in state_dict: "fc.bias"' in msg
    assert 'Unexpected key(s) in state_dict: "bogus", "fc.extra.x"' in msg
    res = dst.load_state_dict(sd, strict=False)
    assert res.missing_keys == ["fc.bias"] and sorted(res.unexpected_keys) == ["bogus", "fc.extra.x"]

    bad = src.state_dict()
    bad["fc.weight"] = ax.zeros(5, 3)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc\.weight: copying a param with shape \(5, 3\) "
                                           r"from checkpoint, the shape in current model is \(4, 3\)"):
        dst.load_state_dict(bad, strict=False)  # shape errors raise even when not strict
    with pytest.raises(RuntimeError, match=r'expected a tensor or an array.*received str'):
        dst.load_state_dict({**src.state_dict(), "scale": "oops"})
    with pytest.raises(TypeError, match="dict-like"):
        dst.load_state_dict([1, 2])  # type: ignore[arg-type]


def test_load_state_dict_numpy_casts_and_assign() -> None:
    m = nn.Linear(2, 2, dtype=ax.float64)
    m.load_state_dict({"weight": np.arange(4, dtype=np.float32).reshape(2, 2), "bias": np.array([1.0, 2.0])})
    assert m.weight.dtype == ax.float64
    np.testing.assert_array_equal(m.weight.detach().numpy(), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(m.bias.detach().numpy(), [1, 2])
    new_w = ax.ones(2, 2)
    m.load_state_dict({"weight": new_w, "bias": ax.zeros(2)}, assign=True)
    assert isinstance(m.weight, nn.Parameter) and m.weight.requires_grad and m.weight.dtype == ax.float32
    half = nn.Linear(2, 2).bfloat16()
    half.load_state_dict({"weight": np.ones((2, 2)), "bias": np.zeros(2)})
    assert half.weight.dtype == ax.bfloat16 and float(half.weight.float().sum()) == 4.0


def test_extra_state_round_trip() -> None:
    class WithExtra(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.step = 0

        def get_extra_state(self) -> Any:
            return {"step": self.step}

        def set_extra_state(self, state: Any) -> None:
            self.step = state["step"]

    a, b = WithExtra(), WithExtra()
    a.step = 7
    assert list(a.state_dict()) == ["_extra_state"]
    b.load_state_dict(a.state_dict())
    assert b.step == 7
    with pytest.raises(RuntimeError, match=r"Unexpected key.*_extra_state"):
        nn.Linear(1, 1).load_state_dict({**nn.Linear(1, 1).state_dict(), "_extra_state": 1})


# ----- modes and conversions ------------------------------------------------------------------
def test_train_eval_requires_grad_zero_grad_apply() -> None:
    model = nn.Sequential(Block(), nn.Sequential(nn.Linear(4, 2)))
    assert model.eval() is model and not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    with pytest.raises(ValueError, match="bool"):
        model.train("yes")  # type: ignore[arg-type]
    model(ax.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    seen: list[str] = []
    model.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Block", "Linear", "Sequential", "Sequential"]  # children first, as PyTorch


def test_to_and_casts_keep_objects_and_skip_integer_buffers() -> None:
    b = Block()
    b.register_buffer("count", ax.tensor(3))
    b(ax.randn(2, 3)).sum().backward()
    w, g = b.fc.weight, b.fc.weight.grad
    assert b.double() is b
    assert b.fc.weight is w and w.dtype == ax.float64 and w.grad is not None and w.grad.dtype == ax.float64
    assert g is not None and b.mean.dtype == ax.float64 and b.count.dtype == ax.int64
    assert isinstance(b.mean, nn.Buffer)
    b.half()
    assert w.dtype == ax.float16 and b.count.dtype == ax.int64
    b.to(ax.float32)
    assert w.dtype == ax.float32 and w.requires_grad and w.is_leaf
    b.to("cpu", dtype=ax.float64)
    assert w.dtype == ax.float64
    b.to(ax.zeros(1))  # a tensor's device and dtype
    assert w.dtype == ax.float32
    b.float().cpu()
    assert w.device == ax.device("cpu")
    with pytest.raises(TypeError, match="floating point"):
        b.to(ax.int32)
    b.type(ax.float64)
    assert b.count.dtype == ax.float64  # type() casts every tensor, as PyTorch's
    out = b(ax.randn(2, 3, dtype=ax.float64))
    out.sum().backward()  # still trains after the conversions
    assert w.grad is not None and w.grad.dtype == ax.float64


def test_deepcopy_and_pickle() -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, shared, Block())
    twin = copy.deepcopy(model)
    assert twin[0] is twin[1] and twin[0] is not shared  # sharing is kept, objects are new
    assert isinstance(twin[0].weight, nn.Parameter) and isinstance(twin[2].mean, nn.Buffer)
    assert not np.shares_memory(twin[0].weight.detach().numpy(), shared.weight.detach().numpy())
    x = ax.randn(2, 3)
    np.testing.assert_array_equal(twin(x).detach().numpy(), model(x).detach().numpy())
    back = pickle.loads(pickle.dumps(model))
    assert isinstance(back[2].scale, nn.Parameter) and back[2].scale.requires_grad
    assert "scratch" in back[2]._non_persistent_buffers_set and isinstance(back[2].mean, nn.Buffer)
    np.testing.assert_array_equal(back(x).detach().numpy(), model(x).detach().numpy())


def test_dir_and_missing_forward() -> None:
    b = Block()
    names = dir(b)
    assert {"fc", "scale", "mean", "forward", "training"} <= set(names)
    assert "0" not in dir(nn.Sequential(nn.Identity()))
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(1)


# ----- hooks ----------------------------------------------------------------------------------
def test_forward_hooks_order_replacement_and_removal() -> None:
    log: list[str] = []
    m = nn.Linear(2, 2)
    h1 = m.register_forward_pre_hook(lambda mod, args: log.append("pre1"))
    m.register_forward_pre_hook(lambda mod, args: log.append("pre0"), prepend=True)
    m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))  # replaces the input
    h2 = m.register_forward_hook(lambda mod, args, out: log.append("post"))
    m.register_forward_hook(lambda mod, args, out: out + 100)  # replaces the output
    out = m(ax.ones(1, 2))
    assert log == ["pre0", "pre1", "post"]
    np.testing.assert_allclose(out.detach().numpy(), m.bias.detach().numpy()[None] + 100, rtol=1e-6)
    h1.remove()
    h2.remove()
    h2.remove()  # twice is harmless
    log.clear()
    m(ax.ones(1, 2))
    assert log == ["pre0"]


def test_forward_hooks_with_kwargs_and_always_call() -> None:
    class Scale(nn.Module):
        def forward(self, x: ax.Tensor, *, factor: float = 1.0) -> ax.Tensor:
            return x * factor

    m = Scale()
    m.register_forward_pre_hook(lambda mod, args, kwargs: (args, {"factor": 3.0}), with_kwargs=True)
    seen: list[Any] = []
    m.register_forward_hook(lambda mod, args, kwargs, out: seen.append(kwargs["factor"]), with_kwargs=True)
    assert float(m(ax.tensor(2.0))) == 6.0 and seen == [3.0]

    class Boom(nn.Module):
        def forward(self, x: Any) -> Any:
            raise ValueError("boom")

    calls: list[Any] = []
    b = Boom()
    b.register_forward_hook(lambda mod, args, out: calls.append(("always", out)), always_call=True)
    b.register_forward_hook(lambda mod, args, out: calls.append("normal"))
    with pytest.raises(ValueError, match="boom"):
        b(1)
    assert calls == [("always", None)]
    with b.register_forward_pre_hook(lambda mod, args: calls.append("ctx")), pytest.raises(ValueError):
        b(1)
    assert "ctx" in calls and not b._forward_pre_hooks
    with pytest.raises(RuntimeError, match="new_args, new_kwargs"):
        m.register_forward_pre_hook(lambda mod, a, k: 5, with_kwargs=True)
        m(ax.tensor(1.0))


def two_inputs(lib: Any) -> Any:
    """The same two-input, two-output module in axonml.nn or torch.nn."""

    class TwoIn(lib.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.fc = lib.Linear(3, 2)

        def forward(self, a: Any, b: Any, k: float = 2.0) -> Any:
            return self.fc(a * b) * k, a.sum(-1)

    return TwoIn()


@pytest.mark.torch
@pytest.mark.parametrize("b_grad", [True, False])
def test_full_backward_hook_matches_torch(torch: Any, b_grad: bool) -> None:
    ours, theirs = two_inputs(nn), two_inputs(torch.nn)
    _from_torch(ours, theirs)
    a0, b0, g0 = np.random.default_rng(0).standard_normal((3, 4, 3)).astype(np.float32)
    records: dict[str, Any] = {}

    def hook(tag: str) -> Any:
        def fn(mod: Any, gi: Any, go: Any) -> Any:
            records[tag] = ([None if g is None else _np(g) for g in gi], [None if g is None else _np(g) for g in go])
            return (gi[0] * 2, gi[1])  # doubles the gradient reaching a

        return fn

    ours.register_full_backward_hook(hook("ours"))
    theirs.register_full_backward_hook(hook("theirs"))
    a, b = ax.tensor(a0, requires_grad=True), ax.tensor(b0, requires_grad=b_grad)
    ta, tb = torch.tensor(a0, requires_grad=True), torch.tensor(b0, requires_grad=b_grad)
    (ours(a, b)[0] * ax.tensor(g0[:, :2])).sum().backward()
    (theirs(ta, tb)[0] * torch.tensor(g0[:, :2])).sum().backward()
    (gi, go), (tgi, tgo) = records["ours"], records["theirs"]
    assert len(gi) == len(tgi) == 2 and len(go) == len(tgo) == 2
    for x, y in zip(gi + go, tgi + tgo):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-5, atol=1e-6)  # the doubled one
    if b_grad:
        np.testing.assert_allclose(b.grad.numpy(), tb.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.fc.weight.grad.numpy(), theirs.fc.weight.grad.numpy(), rtol=1e-5)


@pytest.mark.torch
def test_backward_pre_hook_and_no_input_grad_match_torch(torch: Any) -> None:
    ours, theirs = nn.Linear(3, 2), torch.nn.Linear(3, 2)
    _from_torch(ours, theirs)
    got: dict[str, Any] = {}
    for tag, mod in (("ours", ours), ("theirs", theirs)):
        mod.register_full_backward_pre_hook(lambda m, go: (go[0] * 3,))
        mod.register_full_backward_hook(lambda m, gi, go, tag=tag: got.update({tag: (gi, _np(go[0]))}))
    x0 = np.ones((2, 3), np.float32)
    ours(ax.tensor(x0)).sum().backward()  # the input needs no gradient: the hook fires with grad_input (None,)
    with pytest.warns(UserWarning):
        theirs(torch.tensor(x0)).sum().backward()
    assert got["ours"][0] == (None,) and got["theirs"][0] == (None,)
    np.testing.assert_array_equal(got["ours"][1], got["theirs"][1])  # grad_output after the pre-hook: 3s
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(), rtol=1e-6)


def test_backward_hook_not_fired_without_grad_and_removable() -> None:
    calls: list[int] = []
    m = nn.Linear(2, 2)
    h = m.register_full_backward_hook(lambda *a: calls.append(1))
    with ax.no_grad():
        m(ax.ones(1, 2))
    x = ax.ones(1, 2, requires_grad=True)
    m(x).sum().backward()
    assert calls == [1]
    h.remove()
    m(x).sum().backward()
    assert calls == [1]


# ----- repr and summary -----------------------------------------------------------------------
@pytest.mark.torch
def test_repr_equals_torch_for_a_nested_model(torch: Any) -> None:
    def build(lib: Any) -> Any:
        return lib.Sequential(
            lib.Linear(2, 3),
            lib.Sequential(lib.Flatten(), lib.Identity(), lib.Unflatten(1, (1, 3))),
            lib.ModuleList([lib.Linear(1, 1), lib.Linear(1, 1), lib.Linear(1, 1), lib.Linear(1, 2)]),
            lib.ModuleDict({"a": lib.Linear(4, 5, bias=False), "b": lib.Bilinear(2, 3, 4)}),
            lib.ParameterList([lib.Parameter(torch.ones(2, 3)) if lib is torch.nn else lib.Parameter(ax.ones(2, 3))]),
            lib.ModuleList(),
        )

    assert repr(build(nn)) == repr(build(torch.nn)).replace("torch.", "axonml.")
    two = [nn.Parameter(ax.ones(2, 3)), nn.Parameter(ax.ones(3))]
    ttwo = [torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(3))]
    assert repr(nn.ParameterList(two)) == repr(torch.nn.ParameterList(ttwo)).replace("torch.", "axonml.")
    assert repr(nn.Parameter(ax.ones(2))).startswith("Parameter containing:\ntensor([1., 1.], requires_grad=True)")


def test_summary_table() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(12, 8), nn.Linear(8, 4)), nn.Linear(4, 2))
    model[2].requires_grad_(False)
    model.train()
    s = model.summary((5, 3, 4))
    assert [r.name for r in s.layers] == ["0", "1", "1.0", "1.1", "2"]
    assert [r.output_shape for r in s.layers] == [[5, 12], [5, 4], [5, 8], [5, 4], [5, 2]]
    assert [r.num_params for r in s.layers] == [0, 104 + 36, 104, 36, 10]
    assert [r.trainable for r in s.layers] == ["--", "True", "True", "True", "False"]
    assert s.total_params == 150 and s.trainable_params == 140 and s.non_trainable_params == 10
    assert s.param_bytes == 150 * 4 and s.input_bytes == 60 * 4
    assert s.activation_bytes == (60 + 40 + 20 + 10) * 4  # leaf outputs only
    text = str(s)
    for piece in ("Layer (type)", "1.0 (Linear)", "[5, 8]", "Total params: 150", "Trainable params: 140",
                  "Params size: 600 B"):
        assert piece in text
    assert model.training and all(m.training for m in model.modules())  # restored
    assert not model._forward_hooks and not model[0]._forward_pre_hooks  # hooks removed
    # the input tensor itself; a single layer shows as its own row
    one = nn.Linear(3, 2).summary(ax.zeros(7, 3))
    assert [(r.name, r.output_shape) for r in one.layers] == [("Linear", [7, 2])]
    with pytest.raises(TypeError, match="input shape"):
        model.summary("big")


# ----- containers -----------------------------------------------------------------------------
def test_sequential_api() -> None:
    a, b, c = nn.Linear(2, 2), nn.Identity(), nn.Linear(2, 3)
    s = nn.Sequential(a, b)
    assert len(s) == 2 and s[0] is a and s[-1] is b and list(s) == [a, b]
    s.append(c)
    assert s[2] is c and isinstance(s[1:], nn.Sequential) and list(s[1:]) == [b, c]
    x = ax.randn(4, 2)
    np.testing.assert_allclose(s(x).detach().numpy(), c(a(x)).detach().numpy(), rtol=1e-6)
    s.insert(0, nn.Identity())
    assert list(s._modules) == ["0", "1", "2", "3"] and s[1] is a
    assert s.pop(0) is not a and list(s._modules) == ["0", "1", "2"] and s[0] is a
    del s[1]
    assert list(s) == [a, c] and list(s._modules) == ["0", "1"]
    s.extend(nn.Sequential(nn.Identity()))
    assert len(s) == 3
    s[2] = b
    assert s[2] is b
    assert len(s + nn.Sequential(b)) == 4 and len(s * 2) == 6 and len(2 * s) == 6
    with pytest.raises(IndexError):
        s[5]
    with pytest.raises(ValueError, match="Sequential"):
        s + nn.ModuleList([b])  # type: ignore[operator]
    named = nn.Sequential(OrderedDict(first=a, second=c))
    assert list(named.state_dict()) == ["first.weight", "first.bias", "second.weight", "second.bias"]
    assert named.first is a and list(named[0:1]._modules) == ["first"]


def test_modulelist_and_moduledict() -> None:
    layers = [nn.Linear(1, 1) for _ in range(3)]
    ml = nn.ModuleList(layers[:2])
    ml.append(layers[2])
    assert len(ml) == 3 and ml[-1] is layers[2] and list(ml) == layers
    assert isinstance(ml[:2], nn.ModuleList) and list(ml[:2]) == layers[:2]
    ml.insert(1, nn.Identity())
    assert isinstance(ml[1], nn.Identity) and ml[2] is layers[1]
    del ml[1]
    assert list(ml) == layers and list(ml._modules) == ["0", "1", "2"]
    ml += [nn.Identity()]
    both = ml + nn.ModuleList([nn.Identity()])
    assert len(both) == 5 and list(both.state_dict())[:2] == ["0.weight", "0.bias"]
    assert ml.pop(3) is not None and len(ml) == 3
    with pytest.raises(IndexError):
        ml[7]
    with pytest.raises(TypeError, match="iterable"):
        ml.extend(5)  # type: ignore[arg-type]

    md = nn.ModuleDict({"a": layers[0]})
    md["b"] = layers[1]
    md.update([("c", layers[2])])
    assert list(md) == ["a", "b", "c"] and "b" in md and md["c"] is layers[2] and len(md) == 3
    assert list(md.keys()) == ["a", "b", "c"] and list(md.values()) == layers
    assert md.pop("a") is layers[0] and list(md.state_dict())[:2] == ["b.weight", "b.bias"]
    with pytest.raises(ValueError, match="length 3"):
        md.update([("x", layers[0], 1)])
    md.clear()
    assert len(md) == 0


def test_parameterlist_and_parameterdict() -> None:
    pl = nn.ParameterList([ax.ones(2), nn.Parameter(ax.zeros(3))])
    assert all(isinstance(p, nn.Parameter) for p in pl) and len(pl) == 2
    pl.append(ax.ones(1))
    assert list(pl.state_dict()) == ["0", "1", "2"] and len(list(pl.parameters())) == 3
    assert isinstance(pl[1:], nn.ParameterList) and len(pl[1:]) == 2 and pl[-1].shape == (1,)
    pl[0] = ax.zeros(5)
    assert pl[0].shape == (5,) and isinstance(pl[0], nn.Parameter)
    with pytest.raises(RuntimeError, match="should not be called"):
        pl()

    pd = nn.ParameterDict({"w": ax.ones(2)})
    pd["b"] = nn.Parameter(ax.zeros(1))
    pd.update({"c": ax.ones(3)})
    assert list(pd) == ["w", "b", "c"] and "w" in pd and isinstance(pd["w"], nn.Parameter)
    assert list(pd.state_dict()) == ["w", "b", "c"] and len(pd) == 3
    assert pd.get("zz") is None and pd.get("b") is pd["b"]
    assert pd.pop("b").shape == (1,) and list(pd.keys()) == ["w", "c"]
    assert pd.setdefault("d", ax.ones(1)).shape == (1,)
    key, _ = pd.popitem()
    assert key == "d" and list(reversed(pd)) == ["c", "w"]
    merged = pd | nn.ParameterDict({"z": ax.ones(1)})
    assert list(merged) == ["w", "c", "z"] and merged["w"] is pd["w"]
    assert list(pd.copy()) == ["w", "c"] and [k for k, _ in pd.items()] == ["w", "c"]
    pd.clear()
    assert len(pd) == 0 and list(pd.parameters()) == []


# ----- CUDA -----------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_module_on_cuda_round_trip() -> None:
    b = Block()
    x = ax.randn(4, 3)
    expected = b(x).detach().numpy()
    b(x).sum().backward()
    w = b.fc.weight
    assert b.cuda() is b and b.fc.weight is w  # moved in place, objects kept
    assert w.device.type == "cuda" and w.grad is not None and w.grad.device.type == "cuda"
    assert b.mean.device.type == "cuda" and isinstance(b.mean, nn.Buffer)
    calls: list[Any] = []
    b.register_full_backward_hook(lambda m, gi, go: calls.append(go[0].device.type))
    xc = x.to("cuda").requires_grad_()
    y = b(xc)
    np.testing.assert_allclose(y.detach().cpu().numpy(), expected, rtol=1e-5, atol=1e-6)
    y.sum().backward()
    assert calls == ["cuda"] and xc.grad is not None and xc.grad.device.type == "cuda"
    cpu_copy = Block()
    cpu_copy.load_state_dict(b.state_dict())  # CUDA values into CPU parameters
    np.testing.assert_allclose(cpu_copy(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    gpu_copy = Block().to("cuda:0", ax.float64)
    gpu_copy.load_state_dict({k: v.cpu().numpy() for k, v in b.state_dict().items()})  # NumPy into CUDA
    assert gpu_copy.fc.weight.dtype == ax.float64
    s = b.summary((2, 3))
    assert s.layers[0].output_shape == [2, 4]
    b.cpu()
    assert w.device.type == "cpu" and b.mean.device.type == "cpu"
    np.testing.assert_allclose(b(x).detach().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_backward_hook_module_supports_double_backward() -> None:
    plain = nn.Linear(3, 2, dtype=ax.float64)
    hooked = copy.deepcopy(plain)
    seen: list[int] = []
    hooked.register_full_backward_hook(lambda m, gi, go: seen.append(len(gi)))
    results = []
    for m in (plain, hooked):
        x = ax.randn(4, 3, dtype=ax.float64, generator=ax.Generator().manual_seed(1), requires_grad=True)
        (gx,) = ax.autograd.grad((m(x) ** 2).sum(), x, create_graph=True)
        (gx**2).sum().backward()
        results.append((gx.detach().numpy(), m.weight.grad.numpy()))
    assert seen == [1, 1]  # the second backward passes the module again, as in PyTorch
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-12)
