"""A convolution's CUDA recipe (``_conv_cuda_recipe.Recipe``) against the general path it short-cuts (same kernels
and GEMMs: equal results) and against the CPU in float64 (the oracle)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import axonml as ax
import axonml.nn.functional as F
from axonml.nn.prims import conv as conv_prims
from axonml.nn.prims.conv import ConvGeom, ConvTranspose, ConvWeight

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")]

# (input shape, weight shape, stride, dilation, padding)
CASES = [
    ((4, 3, 9, 9), (5, 3, 3, 3), (1, 1), (1, 1), (1, 1)),  # ResNet's 3x3
    ((2, 6, 8, 7), (4, 6, 3, 3), (2, 2), (1, 1), (1, 1)),  # strided
    ((3, 8, 5, 5), (6, 8, 1, 1), (1, 1), (1, 1), (0, 0)),  # pointwise: the input is the columns
    ((3, 8, 6, 6), (6, 8, 1, 1), (2, 2), (1, 1), (0, 0)),  # ResNet's downsample
    ((2, 2, 11, 10), (3, 2, 3, 2), (1, 2), (2, 1), (2, 0)),  # dilated, uneven
    ((2, 3, 17), (4, 3, 5), (2,), (1,), (2,)),  # 1-D
    ((1, 2, 5, 6, 4), (3, 2, 3, 3, 2), (1, 2, 1), (1, 1, 2), (1, 0, 1)),  # 3-D
]


def _geom(stride: tuple[int, ...], dilation: tuple[int, ...], pad: tuple[int, ...]) -> ConvGeom:
    return ConvGeom(stride, dilation, pad, pad, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) for c in CASES])
def test_recipe_equals_the_general_path(case: Any, dtype: Any) -> None:
    import cupy as cp

    xs, ws, stride, dilation, pad = case
    rng = np.random.default_rng(0)
    x = cp.asarray(rng.standard_normal(xs).astype(dtype))
    w = cp.asarray(rng.standard_normal(ws).astype(dtype))
    geom = _geom(stride, dilation, pad)
    recipe = conv_prims._cuda_recipe(cp, x, w, geom, None)
    assert recipe is not None
    y = recipe.forward(x, w, None)
    want = conv_prims._conv_forward(cp, x, w, None, geom, None)
    assert y.shape == want.shape and y.dtype == want.dtype
    np.testing.assert_array_equal(cp.asnumpy(y), cp.asnumpy(want))

    g = cp.asarray(rng.standard_normal(y.shape).astype(dtype))
    gx, gw = recipe.backward(g, x, w, True, True)
    with conv_prims.sharing_gmat():
        want_gx = ConvTranspose._forward(cp, g, w, None, geom, tuple(xs[2:]))
        want_gw = ConvWeight._forward(cp, x, g, geom, tuple(ws[2:]))
    np.testing.assert_array_equal(cp.asnumpy(gx), cp.asnumpy(want_gx))
    np.testing.assert_array_equal(cp.asnumpy(gw), cp.asnumpy(want_gw))
    assert recipe.backward(g, x, w, False, True)[0] is None
    only_x = recipe.backward(g, x, w, True, False)
    assert only_x[1] is None
    np.testing.assert_array_equal(cp.asnumpy(only_x[0]), cp.asnumpy(want_gx))


@pytest.mark.parametrize("case", CASES, ids=[str(c[0]) for c in CASES])
def test_conv_on_cuda_matches_the_cpu_in_float64(case: Any) -> None:
    xs, ws, stride, dilation, pad = case
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(s) for s in (xs, ws, (ws[0],))]
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[len(xs)]
    results = []
    for device in ("cpu", "cuda"):
        x, w, b = (ax.tensor(a, device=device, requires_grad=True) for a in arrays)
        y = fn(x, w, b, stride=stride, padding=pad, dilation=dilation)
        assert (y.grad_fn.recipe is not None) == (device == "cuda")  # the backward follows the forward's recipe
        (y * y).sum().backward()
        results.append([t.detach().cpu().numpy() for t in (y, x.grad, w.grad, b.grad)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_a_non_contiguous_input_and_gradient_take_the_recipe() -> None:
    x0 = np.random.default_rng(2).standard_normal((3, 4, 6, 6)).astype(np.float32)
    w0 = np.random.default_rng(3).standard_normal((5, 4, 3, 3)).astype(np.float32)
    results = []
    for device in ("cpu", "cuda"):
        x = ax.tensor(x0.transpose(0, 1, 3, 2).copy(), device=device, requires_grad=True)
        w = ax.tensor(w0, device=device, requires_grad=True)
        y = F.conv2d(x.transpose(2, 3), w, padding=1)  # a strided view in
        y.transpose(1, 3).sum().backward()  # a strided gradient back
        results.append([t.detach().cpu().numpy() for t in (y, x.grad, w.grad)])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_groups_and_half_precision_keep_the_general_path() -> None:
    import cupy as cp

    geom = _geom((1, 1), (1, 1), (1, 1))
    x = cp.zeros((2, 4, 5, 5), cp.float32)
    assert conv_prims._cuda_recipe(cp, x, cp.zeros((6, 2, 3, 3), cp.float32), ConvGeom(*geom[:4], 2), None) is None
    assert conv_prims._cuda_recipe(cp, x.astype(cp.float16), cp.zeros((6, 4, 3, 3), cp.float16), geom, None) is None
    assert conv_prims._cuda_recipe(cp, cp.zeros((0, 4, 5, 5), cp.float32), cp.zeros((6, 4, 3, 3), cp.float32), geom,
                                   None) is None
