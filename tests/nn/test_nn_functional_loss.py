"""nn.functional losses and distances: harness (NumPy references, gradients) + PyTorch values and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp

import axonml as ax
import axonml.nn.functional as F
from axonml.errors import DeviceError, DTypeError, IndexingError, ShapeError
from harness import HAS_TORCH, OpSpec, op_tests

needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed")
# broadcasting targets warn, as in PyTorch; the harness calls those cases many times
pytestmark = [pytest.mark.filterwarnings("ignore:.*target size:UserWarning"),
              pytest.mark.filterwarnings("ignore:.*reduction.*'mean' divides:UserWarning")]
REDUCTIONS = ("none", "mean", "sum")


def torch():
    import torch as t

    return t


def TF():
    return torch().nn.functional


def _tt(a, like):
    """A torch tensor of NumPy array ``a`` (floats in the dtype of torch tensor ``like``)."""
    t = torch().tensor(a)
    return t.to(like.dtype) if t.is_floating_point() else t


def _at(a, like):
    """An axonml tensor of NumPy array ``a`` (floats in the dtype of tensor ``like``)."""
    dtype = like.dtype if np.asarray(a).dtype.kind == "f" else None
    return ax.tensor(a, dtype=dtype, device=like.device)


def _red(loss, reduction, mean_div=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    with np.errstate(invalid="ignore"):  # the mean of nothing is NaN
        return np.float64(loss.sum()) / (loss.size if mean_div is None else mean_div)


def _rng(shape, salt=0):
    return np.random.default_rng(1000 + 7 * sum(shape) + len(shape) + salt)


# ----- pointwise regression losses ----------------------------------------------------------------
PAIR = (((3, 4), (3, 4)), ((2, 3, 4), (2, 3, 4)), ((0, 3), (0, 3)), ((), ()))
BROADCAST = (((3, 4), (4,)), ((2, 1, 3), (4, 3)))
WEIGHTED = (((3, 4), (3, 4), (3, 4)),)


def _smooth_l1(x, y, beta):
    d = np.abs(x - y)
    return d if beta == 0 else np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta)


def _huber(x, y, delta):
    d = np.abs(x - y)
    return np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta))


def _pointwise_specs():
    specs = []
    for r in REDUCTIONS:
        sfx = "" if r == "mean" else f"_{r}"
        kw = {"reduction": r}
        specs += [
            OpSpec("l1_loss" + sfx, F.l1_loss, lambda x, y, reduction: _red(np.abs(x - y), reduction),
                   PAIR + BROADCAST, kwargs=kw, torch_fn=TFn("l1_loss")),
            OpSpec("mse_loss" + sfx, F.mse_loss, lambda x, y, reduction: _red((x - y) ** 2, reduction),
                   PAIR + BROADCAST, kwargs=kw, torch_fn=TFn("mse_loss")),
            OpSpec("l1_loss_weight" + sfx, lambda x, y, w, **k: F.l1_loss(x, y, weight=w, **k),
                   lambda x, y, w, reduction: _red(np.abs(x - y) * w, reduction, w.sum()), WEIGHTED, kwargs=kw,
                   torch_fn=lambda x, y, w, **k: TF().l1_loss(x, y, weight=w, **k)),
            OpSpec("mse_loss_weight" + sfx, lambda x, y, w, **k: F.mse_loss(x, y, weight=w, **k),
                   lambda x, y, w, reduction: _red((x - y) ** 2 * w, reduction, w.sum()), WEIGHTED, kwargs=kw,
                   torch_fn=lambda x, y, w, **k: TF().mse_loss(x, y, weight=w, **k)),
            OpSpec("huber_loss_weight" + sfx, lambda x, y, w, **k: F.huber_loss(x, y, weight=w, **k),
                   lambda x, y, w, reduction: _red(_huber(x, y, 1.0) * w, reduction), WEIGHTED, kwargs=kw,
                   torch_fn=lambda x, y, w, **k: TF().huber_loss(x, y, weight=w, **k)),
        ]
        for beta in (1.0, 0.5, 0.0):
            specs.append(OpSpec(f"smooth_l1_loss{sfx}" + ("" if beta == 1 else f"_beta{beta}"), F.smooth_l1_loss,
                                lambda x, y, reduction, beta: _red(_smooth_l1(x, y, beta), reduction),
                                PAIR[:2] + BROADCAST[:1], kwargs={**kw, "beta": beta},
                                torch_fn=TFn("smooth_l1_loss")))
        for delta in (1.0, 0.7):
            specs.append(OpSpec(f"huber_loss{sfx}" + ("" if delta == 1 else f"_delta{delta}"), F.huber_loss,
                                lambda x, y, reduction, delta: _red(_huber(x, y, delta), reduction),
                                PAIR[:2] + BROADCAST[:1], kwargs={**kw, "delta": delta},
                                torch_fn=TFn("huber_loss")))
    return specs


def TFn(name):
    return lambda *a, **kw: getattr(TF(), name)(*a, **kw)


# ----- classification -------------------------------------------------------------------------------
def _targets(shape, ignore=None, salt=0):
    """Class indices for an input of ``shape`` (classes in dimension 1, or 0 for 1-d); some set to ``ignore``."""
    c = 0 if len(shape) == 1 else 1
    tshape = () if len(shape) == 1 else (shape[0], *shape[2:])
    rng = _rng(shape, salt)
    t = rng.integers(0, shape[c], size=tshape)
    if ignore is not None and t.size > 1:
        t.reshape(-1)[::3] = ignore
    return np.asarray(t, dtype=np.int64)


def _probs(shape):
    c = 0 if len(shape) == 1 else 1
    p = _rng(shape, 5).uniform(0.1, 1.0, size=shape)
    return p / p.sum(axis=c, keepdims=True)


def _class_w(shape):
    c = 0 if len(shape) == 1 else 1
    return np.linspace(0.5, 2.0, shape[c])


def _np_log_softmax(x, c):
    return x - logsumexp(x, axis=c, keepdims=True)


def _np_nll(lp, t, weight=None, ignore_index=-100, reduction="mean"):
    """NLL of log-probabilities ``lp`` with classes in the LAST dimension; returns (reduced, per-item, wsum)."""
    n_cls = lp.shape[-1]
    w = np.ones(n_cls) if weight is None else weight
    valid = t != ignore_index
    safe = np.where(valid, t, 0)
    wt = w[safe] * valid
    loss = -np.take_along_axis(lp, safe[..., None], -1)[..., 0] * wt
    return _red(loss, reduction, wt.sum()), wt.sum()


def _np_ce(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    c = 0 if x.ndim == 1 else 1
    lp = np.moveaxis(_np_log_softmax(x, c), c, -1)
    n_cls = lp.shape[-1]
    w = np.ones(n_cls) if weight is None else weight
    if t.dtype.kind == "f":
        tg = np.moveaxis(t, c, -1) * (1 - label_smoothing) + label_smoothing / n_cls
        return _red(-(lp * tg * w).sum(-1), reduction, lp.size / n_cls)
    nll, wsum = _np_nll(lp, t, weight, ignore_index, reduction)
    valid = t != ignore_index
    smooth = -(lp * w).sum(-1) * valid
    return (1 - label_smoothing) * nll + label_smoothing / n_cls * _red(smooth, reduction, wsum)


def _ce_spec(name, shapes, probs=False, weight=False, ignore=None, **kw):
    """cross_entropy with targets (and class weights) made from the input's shape; kw: the options."""
    opts = dict(kw)
    if ignore is not None:
        opts["ignore_index"] = ignore

    def tgt(shape):
        return _probs(shape) if probs else _targets(shape, ignore)

    def fn(x):
        w = _at(_class_w(x.shape), x) if weight else None
        return F.cross_entropy(x, _at(tgt(x.shape), x), weight=w, **opts)

    def ref(x):
        return _np_ce(x, tgt(x.shape), _class_w(x.shape) if weight else None, **opts)

    def tfn(x):
        w = _tt(_class_w(x.shape), x) if weight else None
        return TF().cross_entropy(x, _tt(tgt(x.shape), x), weight=w, **opts)

    return OpSpec(name, fn, ref, shapes, domain=(-3.0, 3.0), torch_fn=tfn)


def _nll_spec(name, shapes, weight=False, ignore=None, **kw):
    opts = dict(kw)
    if ignore is not None:
        opts["ignore_index"] = ignore

    def fn(x):
        w = _at(_class_w(x.shape), x) if weight else None
        return F.nll_loss(x, _at(_targets(x.shape, ignore), x), weight=w, **opts)

    def ref(x):
        c = 0 if x.ndim == 1 else 1
        return _np_nll(np.moveaxis(x, c, -1), _targets(x.shape, ignore), _class_w(x.shape) if weight else None,
                       **opts)[0]

    def tfn(x):
        w = _tt(_class_w(x.shape), x) if weight else None
        return TF().nll_loss(x, _tt(_targets(x.shape, ignore), x), weight=w, **opts)

    return OpSpec(name, fn, ref, shapes, torch_fn=tfn)


CE_SHAPES = (((4, 5),), ((2, 3, 2, 2),), ((5,),), ((0, 3),))
CLASS_SPECS = []
for _r in REDUCTIONS:
    _s = "" if _r == "mean" else f"_{_r}"
    _empty = CE_SHAPES if _r != "mean" else CE_SHAPES[:3]  # an empty batch's mean is 0/0 = NaN (tested below)
    CLASS_SPECS += [
        _ce_spec("cross_entropy" + _s, _empty, reduction=_r),
        _ce_spec("cross_entropy_weight" + _s, CE_SHAPES[:3], weight=True, reduction=_r),
        _ce_spec("cross_entropy_ignore" + _s, CE_SHAPES[:2], weight=True, ignore=2, reduction=_r),
        # the fused (N, C) path: ignored targets without class weights, and many classes (rows layout)
        _ce_spec("cross_entropy_ignore_unweighted" + _s, (((4, 5),), ((3, 70),)), ignore=2, reduction=_r),
        _ce_spec("cross_entropy_smooth" + _s, CE_SHAPES[:3], ignore=-100, reduction=_r, label_smoothing=0.2),
        _ce_spec("cross_entropy_smooth_weight_ignore" + _s, CE_SHAPES[:2], weight=True, ignore=1, reduction=_r,
                 label_smoothing=0.3),
        _ce_spec("cross_entropy_probs" + _s, CE_SHAPES[:3], probs=True, reduction=_r),
        _ce_spec("cross_entropy_probs_weight_smooth" + _s, CE_SHAPES[:3], probs=True, weight=True, reduction=_r,
                 label_smoothing=0.1),
        _nll_spec("nll_loss" + _s, _empty, reduction=_r),
        _nll_spec("nll_loss_weight_ignore" + _s, CE_SHAPES[:3], weight=True, ignore=0, reduction=_r),
    ]


def _bce(x, y, w=None, reduction="mean"):
    loss = -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log(1 - x), -100))
    return _red(loss if w is None else loss * w, reduction)


def _bce_logits(x, y, w=None, pw=None, reduction="mean"):
    lw = 1.0 if pw is None else 1 + (pw - 1) * y
    loss = (1 - y) * x + lw * np.logaddexp(0, -x)
    return _red(loss if w is None else loss * w, reduction)


def _mlsm(x, y, w=None, reduction="mean"):
    ls = -np.logaddexp(0, -x)
    lsn = -np.logaddexp(0, x)
    loss = -(y * ls + (1 - y) * lsn)
    loss = loss if w is None else loss * w
    return _red(loss.sum(-1) / x.shape[-1], reduction)


def _kl(x, t, log_target=False, reduction="mean"):
    loss = np.exp(t) * (t - x) if log_target else np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0) - t * x
    if reduction == "batchmean":
        return loss.sum() / x.shape[0]
    return _red(loss, reduction)


def _poisson(x, t, log_input=True, full=False, eps=1e-8, reduction="mean"):
    loss = np.exp(x) - t * x if log_input else x - t * np.log(x + eps)
    if full:
        ts = np.where(t > 1, t, 2.0)
        loss = loss + np.where(t > 1, ts * np.log(ts) - ts + 0.5 * np.log(2 * np.pi * ts), 0)
    return _red(loss, reduction)


def _counts(shape):
    return _rng(shape, 3).integers(0, 5, size=shape).astype(np.float64)


def _gnll(x, y, v, full=False, eps=1e-6, reduction="mean"):
    v = np.asarray(v, dtype=np.float64)
    if v.shape != x.shape and x.shape[:-1] == v.shape:
        v = v[..., None]
    v = np.maximum(v, eps)
    loss = 0.5 * (np.log(v) + (x - y) ** 2 / v) + (0.5 * np.log(2 * np.pi) if full else 0)
    return _red(loss, reduction)


def _sign_target(shape):
    return np.where(_rng(shape, 9).uniform(size=shape) > 0.5, 1.0, -1.0)


def _cos_emb(x1, x2, t, margin=0.0, reduction="mean"):
    cos = (x1 * x2).sum(-1) / np.sqrt(((x1 * x1).sum(-1) + 1e-12) * ((x2 * x2).sum(-1) + 1e-12))
    return _red(np.where(t == 1, 1 - cos, np.maximum(cos - margin, 0)), reduction)


def _pdist(a, b, p=2.0, eps=1e-6):
    return (np.abs(a - b + eps) ** p).sum(-1) ** (1 / p)


def _triplet(a, pos, neg, margin=1.0, p=2.0, eps=1e-6, swap=False, reduction="mean"):
    dn = _pdist(a, neg, p, eps)
    if swap:
        dn = np.minimum(dn, _pdist(pos, neg, p, eps))
    return _red(np.maximum(_pdist(a, pos, p, eps) - dn + margin, 0), reduction)


def _cos_sim(a, b, dim=1, eps=1e-8):
    a, b = np.broadcast_arrays(a, b)
    na = np.maximum(np.sqrt((a * a).sum(dim, keepdims=True)), eps)
    nb = np.maximum(np.sqrt((b * b).sum(dim, keepdims=True)), eps)
    return ((a / na) * (b / nb)).sum(dim)


def _with_target(name, f_ours, f_ref, f_torch, shapes, target, **kw):
    """A spec whose last argument (a target made from the first input's shape) is not differentiated."""
    return OpSpec(name, lambda *xs: f_ours(*xs, _at(target(xs[0].shape), xs[0]), **kw),
                  lambda *xs: f_ref(*xs, target(xs[0].shape), **kw), shapes,
                  torch_fn=lambda *xs: f_torch(*xs, _tt(target(xs[0].shape), xs[0]), **kw))


OTHER_SPECS = []
for _r in REDUCTIONS:
    _s = "" if _r == "mean" else f"_{_r}"
    _k = {"reduction": _r}
    OTHER_SPECS += [
        OpSpec("binary_cross_entropy" + _s, F.binary_cross_entropy, _bce, (((3, 4), (3, 4)), ((5,), (5,))),
               kwargs=_k, domain=(0.05, 0.95), torch_fn=TFn("binary_cross_entropy")),
        OpSpec("binary_cross_entropy_weight" + _s, lambda x, y, w, **k: F.binary_cross_entropy(x, y, w, **k),
               lambda x, y, w, **k: _bce(x, y, w, **k), (((3, 4), (3, 4), (4,)), ((2, 3), (2, 3), (2, 3))),
               kwargs=_k, domain=(0.05, 0.95), grad_inputs=(0, 1),  # PyTorch has no gradient for weight
               torch_fn=lambda x, y, w, **k: TF().binary_cross_entropy(x, y, w, **k)),
        OpSpec("binary_cross_entropy_with_logits" + _s, F.binary_cross_entropy_with_logits, _bce_logits,
               (((3, 4), (3, 4)), ((0, 2), (0, 2)), ((), ())), kwargs=_k, domain=(-4.0, 4.0),
               torch_fn=TFn("binary_cross_entropy_with_logits")),
        OpSpec("binary_cross_entropy_with_logits_weights" + _s,
               lambda x, y, w, pw, **k: F.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, **k),
               lambda x, y, w, pw, **k: _bce_logits(x, y, w, pw, **k), (((3, 4), (3, 4), (3, 1), (4,)),),
               kwargs=_k, domain=(-3.0, 3.0), grad_inputs=(0, 1),
               torch_fn=lambda x, y, w, pw, **k: TF().binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, **k)),
        OpSpec("multilabel_soft_margin_loss" + _s, F.multilabel_soft_margin_loss, _mlsm,
               (((3, 4), (3, 4)), ((5,), (5,))), kwargs=_k, domain=(-3.0, 3.0),
               torch_fn=TFn("multilabel_soft_margin_loss")),
        OpSpec("multilabel_soft_margin_loss_weight" + _s, lambda x, y, w, **k: F.multilabel_soft_margin_loss(
            x, y, w, **k), _mlsm, (((3, 4), (3, 4), (4,)),), kwargs=_k, domain=(-3.0, 3.0),
               torch_fn=lambda x, y, w, **k: TF().multilabel_soft_margin_loss(x, y, w, **k)),
        OpSpec("kl_div" + _s, F.kl_div, _kl, (((3, 4), (3, 4)), ((2, 3, 2), (2, 3, 2))), kwargs=_k,
               domain=(0.05, 2.0), torch_fn=TFn("kl_div")),
        OpSpec("kl_div_log_target" + _s, F.kl_div, _kl, (((3, 4), (3, 4)),), kwargs={**_k, "log_target": True},
               torch_fn=TFn("kl_div")),
        _with_target("poisson_nll_loss" + _s, F.poisson_nll_loss, _poisson, TFn("poisson_nll_loss"),
                     (((3, 4),), ((5,),)), _counts, **_k),
        _with_target("poisson_nll_loss_full" + _s, lambda x, t, **k: F.poisson_nll_loss(x, t, **k), _poisson,
                     TFn("poisson_nll_loss"), (((3, 4),),), _counts, full=True, **_k),
        OpSpec("poisson_nll_loss_rates" + _s,
               lambda x, t, **k: F.poisson_nll_loss(x, t, log_input=False, full=True, **k),
               lambda x, t, **k: _poisson(x, t, log_input=False, full=True, **k), (((3, 4), (3, 4)),), kwargs=_k,
               domain=(0.2, 3.0), grad_inputs=(0,),
               torch_fn=lambda x, t, **k: TF().poisson_nll_loss(x, t, log_input=False, full=True, **k)),
        OpSpec("gaussian_nll_loss" + _s, F.gaussian_nll_loss, _gnll,
               (((3, 4), (3, 4), (3, 4)), ((3, 4), (3, 4), (3, 1)), ((3, 4), (3, 4), (3,)), ((2, 3), (2, 3), (2, 1))),
               kwargs=_k, domain=(0.2, 2.0), torch_fn=TFn("gaussian_nll_loss")),
        OpSpec("gaussian_nll_loss_full" + _s, F.gaussian_nll_loss, _gnll, (((3, 4), (3, 4), (3, 4)),),
               kwargs={**_k, "full": True, "eps": 0.1}, domain=(0.2, 2.0), torch_fn=TFn("gaussian_nll_loss")),
        _with_target("cosine_embedding_loss" + _s, F.cosine_embedding_loss, _cos_emb, TFn("cosine_embedding_loss"),
                     (((4, 3), (4, 3)),), lambda s: _sign_target(s[:1]), **_k),
        _with_target("cosine_embedding_loss_margin" + _s, F.cosine_embedding_loss, _cos_emb,
                     TFn("cosine_embedding_loss"), (((4, 3), (4, 3)), ((5,), (5,))),
                     lambda s: _sign_target(s[:-1]), margin=-0.3, **_k),
        _with_target("margin_ranking_loss" + _s, F.margin_ranking_loss,
                     lambda a, b, t, margin=0.0, reduction="mean": _red(np.maximum(-t * (a - b) + margin, 0),
                                                                        reduction),
                     TFn("margin_ranking_loss"), (((6,), (6,)), ((2, 3), (2, 3))), _sign_target, margin=0.4, **_k),
        _with_target("hinge_embedding_loss" + _s, F.hinge_embedding_loss,
                     lambda x, t, margin=1.0, reduction="mean": _red(np.where(t == 1, x, np.maximum(margin - x, 0)),
                                                                     reduction),
                     TFn("hinge_embedding_loss"), (((3, 4),), ((5,),)), _sign_target, margin=0.8, **_k),
        OpSpec("triplet_margin_loss" + _s, F.triplet_margin_loss, _triplet,
               (((4, 3), (4, 3), (4, 3)), ((3,), (3,), (3,))), kwargs=_k, torch_fn=TFn("triplet_margin_loss")),
        OpSpec("triplet_margin_loss_p1_swap" + _s, F.triplet_margin_loss, _triplet, (((4, 3), (4, 3), (4, 3)),),
               kwargs={**_k, "p": 1.0, "swap": True, "margin": 0.5}, torch_fn=TFn("triplet_margin_loss")),
        OpSpec("triplet_margin_loss_p3" + _s, F.triplet_margin_loss, _triplet, (((4, 3), (4, 3), (4, 3)),),
               kwargs={**_k, "p": 3.0, "eps": 1e-3}, torch_fn=TFn("triplet_margin_loss")),
    ]
OTHER_SPECS += [
    OpSpec("kl_div_batchmean", F.kl_div, _kl, (((3, 4), (3, 4)),), kwargs={"reduction": "batchmean"},
           domain=(0.05, 2.0), torch_fn=TFn("kl_div")),
    OpSpec("pairwise_distance", F.pairwise_distance, _pdist, (((4, 3), (4, 3)), ((4, 3), (3,)), ((3,), (3,))),
           torch_fn=TFn("pairwise_distance")),
    OpSpec("pairwise_distance_p1", F.pairwise_distance, _pdist, (((4, 3), (4, 3)),), kwargs={"p": 1.0},
           torch_fn=TFn("pairwise_distance")),
    OpSpec("cosine_similarity", F.cosine_similarity, _cos_sim, (((4, 3), (4, 3)), ((2, 3, 4), (3, 1)),
                                                                 ((4, 3), (1, 3))),
           torch_fn=TFn("cosine_similarity")),
    OpSpec("cosine_similarity_dim", F.cosine_similarity, _cos_sim, (((4, 3), (4, 3)),), kwargs={"dim": 0},
           torch_fn=TFn("cosine_similarity")),
]


# ----- CTC ----------------------------------------------------------------------------------------
def _np_ctc(lp, targets, in_len, tgt_len, blank=0, reduction="mean", zero_infinity=False):
    """Per-sample -log p(target) by the alpha recursion in log space (lp: (T, N, C), padded targets)."""
    losses = []
    for b in range(lp.shape[1]):
        lab = list(targets[b][: tgt_len[b]])
        ext = [blank]
        for c in lab:
            ext += [c, blank]
        alpha = np.full(len(ext), -np.inf)
        alpha[0] = lp[0, b, ext[0]]
        if len(ext) > 1:
            alpha[1] = lp[0, b, ext[1]]
        for t in range(1, in_len[b]):
            new = np.full_like(alpha, -np.inf)
            for s in range(len(ext)):
                terms = [alpha[s]] + ([alpha[s - 1]] if s >= 1 else [])
                if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                    terms.append(alpha[s - 2])
                new[s] = np.logaddexp.reduce(terms) + lp[t, b, ext[s]]
            alpha = new
        ll = np.logaddexp.reduce(alpha[-2:]) if len(ext) > 1 else alpha[-1]
        losses.append(-ll)
    loss = np.array(losses)
    if zero_infinity:
        loss = np.where(np.isinf(loss), 0.0, loss)
    if reduction == "mean":
        return (loss / np.maximum(tgt_len, 1)).mean()
    return _red(loss, reduction)


CTC_TARGETS = np.array([[1, 2, 2], [3, 1, 0]])
CTC_IN, CTC_TGT = np.array([5, 4]), np.array([3, 2])


def _ctc_spec(name, **kw):
    def fn(x):
        return F.ctc_loss(F.log_softmax(x, 2), ax.tensor(CTC_TARGETS), CTC_IN, CTC_TGT, **kw)

    def ref(x):
        return _np_ctc(_np_log_softmax(x, 2), CTC_TARGETS, CTC_IN, CTC_TGT, **kw)

    def tfn(x):
        t = torch()
        return TF().ctc_loss(x.log_softmax(2), t.tensor(CTC_TARGETS), t.tensor(CTC_IN), t.tensor(CTC_TGT), **kw)

    return OpSpec(name, fn, ref, (((5, 2, 4),),), torch_fn=tfn)


CTC_SPECS = [_ctc_spec("ctc_loss"), _ctc_spec("ctc_loss_none", reduction="none"),
             _ctc_spec("ctc_loss_sum_blank3", reduction="sum", blank=3)]
CTC_SPECS[0].gradgrad = True  # the recursion is smooth: second derivatives through 5 steps
for _c in CTC_SPECS[1:]:
    _c.gradgrad = False

SPECS = _pointwise_specs() + CLASS_SPECS + OTHER_SPECS + CTC_SPECS
for _spec in SPECS:  # every shape and second derivatives for 'mean'; 'none' and 'sum' on the first shape
    if "_none" in _spec.name or "_sum" in _spec.name:
        _spec.gradgrad = False
        _spec.shapes = [sh for sh in _spec.shapes if 0 not in sum(sh, ())][:1] + [
            sh for sh in _spec.shapes if 0 in sum(sh, ())]  # keep the empty-batch cases
globals().update(op_tests(SPECS))


def test_every_function_is_tested():
    names = {s.name for s in SPECS}
    missing = sorted(n for n in F.loss.__all__ if n not in names)
    assert not missing, f"loss functions without a harness spec: {missing}"


# ----- PyTorch parity of values and gradients (float64) ---------------------------------------------
def check_torch_grad(spec, shapes):
    t = torch()
    arrays = spec.make_inputs(shapes)
    idx = list(spec.grad_inputs) if spec.grad_inputs is not None else [
        i for i, a in enumerate(arrays) if a.dtype.kind == "f"]
    ours = [ax.tensor(a, requires_grad=i in idx) for i, a in enumerate(arrays)]
    theirs = [t.tensor(a, requires_grad=i in idx) for i, a in enumerate(arrays)]
    out = spec.fn(*ours, **spec.kwargs)
    tout = spec.torch_fn(*theirs, **spec.kwargs)
    assert tuple(out.shape) == tuple(tout.shape), spec.name
    np.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-12,
                               err_msg=f"{spec.name}: float64 value vs torch")
    w = np.random.default_rng(7).uniform(0.5, 1.5, size=tuple(tout.shape))
    grads = ax.autograd.grad((out * ax.tensor(w)).sum(), [ours[i] for i in idx], allow_unused=True)
    tgrads = t.autograd.grad((tout * t.tensor(w)).sum(), [theirs[i] for i in idx], allow_unused=True)
    for i, g, tg in zip(idx, grads, tgrads):
        expected = np.zeros_like(arrays[i]) if tg is None else tg.numpy()
        got = np.zeros_like(arrays[i]) if g is None else g.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10, err_msg=f"{spec.name}: grad {i} vs torch")


TORCH_CASES = [pytest.param(s, sh, id=f"{s.name}-{i}") for s in SPECS if s.torch_fn is not None
               for i, sh in enumerate(s.shapes)]


@pytest.mark.torch
@needs_torch
@pytest.mark.parametrize(("spec", "shapes"), TORCH_CASES)
def test_torch_values_and_gradients(spec, shapes):
    check_torch_grad(spec, shapes)


# ----- reductions, legacy flags, errors ----------------------------------------------------------
def _calls():
    x, y = ax.rand(3, 4), ax.rand(3, 4)
    lp, t, s = ax.randn(3, 4), ax.tensor([0, 1, 3]), ax.tensor([1.0, -1.0, 1.0])
    return {
        "l1_loss": lambda r: F.l1_loss(x, y, reduction=r), "mse_loss": lambda r: F.mse_loss(x, y, reduction=r),
        "smooth_l1_loss": lambda r: F.smooth_l1_loss(x, y, reduction=r),
        "huber_loss": lambda r: F.huber_loss(x, y, reduction=r),
        "cross_entropy": lambda r: F.cross_entropy(lp, t, reduction=r),
        "nll_loss": lambda r: F.nll_loss(lp, t, reduction=r),
        "binary_cross_entropy": lambda r: F.binary_cross_entropy(x, y, reduction=r),
        "binary_cross_entropy_with_logits": lambda r: F.binary_cross_entropy_with_logits(lp, y, reduction=r),
        "kl_div": lambda r: F.kl_div(lp, y, reduction=r),
        "cosine_embedding_loss": lambda r: F.cosine_embedding_loss(x, y, s, reduction=r),
        "margin_ranking_loss": lambda r: F.margin_ranking_loss(x[:, 0], y[:, 0], s, reduction=r),
        "triplet_margin_loss": lambda r: F.triplet_margin_loss(x, y, lp, reduction=r),
        "hinge_embedding_loss": lambda r: F.hinge_embedding_loss(x, ax.ones(3, 4), reduction=r),
        "multilabel_soft_margin_loss": lambda r: F.multilabel_soft_margin_loss(lp, y, reduction=r),
        "poisson_nll_loss": lambda r: F.poisson_nll_loss(lp, y, reduction=r),
        "gaussian_nll_loss": lambda r: F.gaussian_nll_loss(x, y, ax.ones(3, 4), reduction=r),
        "ctc_loss": lambda r: F.ctc_loss(lp.reshape(3, 1, 4).log_softmax(2), ax.tensor([[1]]), [3], [1],
                                         reduction=r),
    }


@pytest.mark.parametrize("name", sorted(_calls()))
def test_reductions_and_bad_reduction_strings(name):
    call = _calls()[name]
    with pytest.warns(UserWarning) if name == "kl_div" else _nothing():
        mean = call("mean")
    none, total = call("none"), call("sum")
    assert mean.ndim == 0 and total.ndim == 0 and none.ndim >= 1
    if name not in ("cross_entropy", "nll_loss", "ctc_loss"):  # those are weighted/length-normalized means
        np.testing.assert_allclose(mean.item(), none.numpy().mean(), rtol=1e-5)
    np.testing.assert_allclose(total.item(), none.numpy().sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        call("average")


class _nothing:  # noqa: N801 - a null context manager
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_legacy_size_average_and_reduce():
    x, y = ax.tensor([1.0, 2.0]), ax.tensor([0.0, 0.0])
    with pytest.warns(UserWarning, match="deprecated"):
        assert F.mse_loss(x, y, size_average=False).item() == 5.0
    with pytest.warns(UserWarning):
        assert F.l1_loss(x, y, reduce=False).tolist() == [1.0, 2.0]
    with pytest.warns(UserWarning):
        assert F.mse_loss(x, y, size_average=True, reduce=True).item() == 2.5


def test_cross_entropy_and_nll_errors():
    x = ax.randn(4, 5)
    with pytest.raises(ShapeError, match=r"\(3,\).*\(4, 5\)"):
        F.cross_entropy(x, ax.tensor([0, 1, 2]))
    with pytest.raises(ShapeError, match=r"\(4, 4\)"):
        F.cross_entropy(x, ax.rand(4, 4))
    with pytest.raises(ShapeError, match="weight"):
        F.cross_entropy(x, ax.tensor([0, 1, 2, 3]), weight=ax.ones(4))
    with pytest.raises(IndexingError, match="out of bounds"):
        F.cross_entropy(x, ax.tensor([0, 1, 2, 5]))
    with pytest.raises(IndexingError, match="out of bounds"):
        F.nll_loss(x, ax.tensor([0, -1, 2, 3]))
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(x, ax.tensor([0, 1, 2, 3]), label_smoothing=1.5)
    with pytest.raises(DTypeError, match="integers"):
        F.nll_loss(x, ax.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(DTypeError, match="floating"):
        F.cross_entropy(ax.tensor([[1, 2]]), ax.tensor([0]))
    with pytest.raises(ShapeError, match="0-d"):
        F.cross_entropy(ax.tensor(1.0), ax.tensor(0))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0 / 0, by design
def test_empty_batch_mean_is_nan_like_torch():
    assert math.isnan(F.cross_entropy(ax.zeros(0, 3), ax.zeros(0, dtype=ax.int64)).item())
    assert math.isnan(F.nll_loss(ax.zeros(0, 3), ax.zeros(0, dtype=ax.int64)).item())


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0 / 0, by design
def test_nll_loss_all_ignored_is_nan_like_torch():
    out = F.nll_loss(ax.randn(3, 4), ax.tensor([-100, -100, -100]))
    assert math.isnan(out.item())
    assert F.nll_loss(ax.randn(3, 4), ax.tensor([-100, -100, -100]), reduction="sum").item() == 0.0


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0 / 0, by design
def test_cross_entropy_all_ignored():
    x = ax.randn(3, 4, requires_grad=True)
    t = ax.tensor([-100, -100, -100])
    assert math.isnan(F.cross_entropy(x, t).item())
    assert F.cross_entropy(x, t, reduction="sum").item() == 0.0
    F.cross_entropy(x, t, reduction="sum").backward()
    assert not x.grad.numpy().any()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0), inf - inf: NaN and inf losses, by design
def test_cross_entropy_infinite_logits_match_composed_log_softmax():
    x = ax.tensor([[math.inf, 0.0, 1.0], [-math.inf, -math.inf, -math.inf], [-math.inf, 2.0, 1.0]])
    t = ax.tensor([1, 0, 1])
    ref = F.nll_loss(F.log_softmax(x, 1), t, reduction="none")
    np.testing.assert_array_equal(F.cross_entropy(x, t, reduction="none").numpy(), ref.numpy())


def test_cross_entropy_is_stable_for_huge_logits():
    x = ax.tensor([[1000.0, -1000.0, 0.0], [-5e4, 5e4, 0.0]], requires_grad=True)
    loss = F.cross_entropy(x, ax.tensor([0, 0]), reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), [0.0, 1e5], rtol=1e-6)
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_binary_cross_entropy_clamps_and_checks():
    x = ax.tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    y = ax.tensor([1.0, 0.0, 0.0, 1.0])
    loss = F.binary_cross_entropy(x, y, reduction="none")
    assert loss.tolist() == [100.0, 100.0, 0.0, 0.0]  # log clamped at -100, as PyTorch
    loss.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(ax.tensor([1.5]), ax.tensor([1.0]))
    with pytest.raises(ShapeError, match="target shape"):
        F.binary_cross_entropy(ax.rand(3), ax.rand(3, 1))
    with pytest.raises(ShapeError, match="same as input size"):
        F.binary_cross_entropy_with_logits(ax.rand(3), ax.rand(1, 3))


@needs_torch
def test_bce_with_logits_extreme_logits_match_torch():
    t = torch()
    data = np.array([-1e4, -100.0, -30.0, -1.0, 0.0, 1.0, 30.0, 100.0, 1e4])
    tgt = np.array([1.0, 0.0, 1.0, 0.3, 1.0, 0.0, 0.0, 1.0, 0.0])
    x = ax.tensor(data, requires_grad=True)
    tx = t.tensor(data, requires_grad=True)
    pw = np.full(9, 2.5)
    ours = F.binary_cross_entropy_with_logits(x, ax.tensor(tgt), pos_weight=ax.tensor(pw), reduction="none")
    theirs = TF().binary_cross_entropy_with_logits(tx, t.tensor(tgt), pos_weight=t.tensor(pw), reduction="none")
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-12)
    ours.sum().backward()
    theirs.sum().backward()
    # atol: both are 1 - (1 - sigmoid(100)) style differences of 1e-44 in the far tails
    np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-30)


def test_gaussian_nll_checks_and_scalar_variance():
    x, y = ax.zeros(3, 2), ax.ones(3, 2)
    np.testing.assert_allclose(F.gaussian_nll_loss(x, y, 2.0).item(), 0.5 * (np.log(2.0) + 0.5), rtol=1e-6)
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(x, y, -1.0)
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(x, y, -ax.ones(3, 2))
    with pytest.raises(ShapeError, match="var"):
        F.gaussian_nll_loss(x, y, ax.ones(2, 3))


@needs_torch
def test_gaussian_nll_clamped_variance_gradient_matches_torch():
    t = torch()
    v = np.array([[1e-9, 0.5], [2.0, 1e-3]])
    x, y = np.array([[0.3, -0.2], [1.0, 0.0]]), np.zeros((2, 2))
    av, tv = ax.tensor(v, requires_grad=True), t.tensor(v, requires_grad=True)
    ours = F.gaussian_nll_loss(ax.tensor(x), ax.tensor(y), av, eps=1e-2)
    theirs = TF().gaussian_nll_loss(t.tensor(x), t.tensor(y), tv, eps=1e-2)
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-12)
    ours.backward()
    theirs.backward()
    np.testing.assert_allclose(av.grad.numpy(), tv.grad.numpy(), rtol=1e-12)


def test_other_argument_errors():
    with pytest.raises(ValueError, match="margin"):
        F.triplet_margin_loss(ax.rand(2, 3), ax.rand(2, 3), ax.rand(2, 3), margin=0.0)
    with pytest.raises(ShapeError, match="same number of dimensions"):
        F.triplet_margin_loss(ax.rand(2, 3), ax.rand(3), ax.rand(2, 3))
    with pytest.raises(ShapeError, match="same number of dimensions"):
        F.margin_ranking_loss(ax.rand(3), ax.rand(3), ax.ones(1, 3))
    with pytest.raises(ShapeError, match="target"):
        F.cosine_embedding_loss(ax.rand(3, 2), ax.rand(3, 2), ax.ones(3, 1))
    with pytest.raises(ValueError, match="beta"):
        F.smooth_l1_loss(ax.rand(3), ax.rand(3), beta=-1.0)
    with pytest.raises(ValueError, match="delta"):
        F.huber_loss(ax.rand(3), ax.rand(3), delta=0.0)
    with pytest.raises(ShapeError, match="weight"):
        F.mse_loss(ax.rand(3), ax.rand(3), weight=ax.ones(2))
    with pytest.raises(ShapeError, match="broadcast"):
        F.l1_loss(ax.rand(3), ax.rand(4))
    with pytest.warns(UserWarning, match="target size"):
        F.mse_loss(ax.rand(3, 1), ax.rand(3))


# ----- CTC against PyTorch --------------------------------------------------------------------------
def _ctc_case(seed, n_time, n, n_cls, s_max):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_time, n, n_cls)) * 2
    tgt_len = rng.integers(0, s_max + 1, size=n)
    in_len = rng.integers(max(1, n_time - 3), n_time + 1, size=n)
    targets = rng.integers(1, n_cls, size=(n, s_max))
    return logits, targets, in_len, tgt_len


def _ctc_both(logits, targets, in_len, tgt_len, concat=False, dtype=np.float64, **kw):
    t = torch()
    if concat:
        flat = np.concatenate([targets[i, :tgt_len[i]] for i in range(len(tgt_len))]).astype(np.int64)
        at, tt = ax.tensor(flat), t.tensor(flat)
    else:
        at, tt = ax.tensor(targets), t.tensor(targets)
    x = ax.tensor(logits.astype(dtype), requires_grad=True)
    tx = t.tensor(logits.astype(dtype), requires_grad=True)
    ours = F.ctc_loss(F.log_softmax(x, -1), at, ax.tensor(in_len), ax.tensor(tgt_len), **kw)
    theirs = TF().ctc_loss(tx.log_softmax(-1), tt, t.tensor(in_len), t.tensor(tgt_len), **kw)
    w = np.random.default_rng(1).uniform(0.5, 1.5, size=tuple(theirs.shape))
    (ours * ax.tensor(w.astype(dtype))).sum().backward()
    (theirs * t.tensor(w.astype(dtype))).sum().backward()
    return ours.detach().numpy(), theirs.detach().numpy(), x.grad.numpy(), tx.grad.numpy()


@needs_torch
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("concat", [False, True], ids=["padded", "concatenated"])
def test_ctc_matches_torch(reduction, concat):
    # the gradient through log_softmax: PyTorch's raw ctc gradient assumes normalized log_probs
    for seed, shape in [(0, (12, 3, 5, 4)), (1, (8, 4, 6, 3)), (2, (30, 2, 4, 6))]:
        case = _ctc_case(seed, *shape)
        v, tv, g, tg = _ctc_both(*case, concat=concat, reduction=reduction)
        np.testing.assert_allclose(v, tv, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(g, tg, rtol=1e-8, atol=1e-10)


@needs_torch
def test_ctc_repeats_blank_unbatched_float32_and_impossible():
    logits = np.random.default_rng(3).normal(size=(6, 2, 4))
    targets = np.array([[2, 2, 2], [1, 1, 0]])  # repeats need a blank between them
    for kw in ({"blank": 0}, {"blank": 3, "reduction": "sum"}):
        tg = np.where(targets == kw["blank"], 1, targets)
        v, tv, g, tgr = _ctc_both(logits, tg, np.array([6, 5]), np.array([3, 2]), **kw)
        np.testing.assert_allclose(v, tv, rtol=1e-10)
        np.testing.assert_allclose(g, tgr, rtol=1e-8, atol=1e-10)
    v, tv, g, tgr = _ctc_both(logits, targets, np.array([6, 5]), np.array([3, 2]), dtype=np.float32)
    np.testing.assert_allclose(v, tv, rtol=1e-5)
    np.testing.assert_allclose(g, tgr, rtol=1e-4, atol=1e-6)
    # 3 repeated labels need 5 steps: with 4 the loss is infinite, and zero_infinity makes it 0
    v, tv, _, _ = _ctc_both(logits, targets, np.array([4, 5]), np.array([3, 2]), reduction="none")
    assert math.isinf(v[0]) and math.isinf(tv[0]) and np.isclose(v[1], tv[1])
    v, tv, g, tgr = _ctc_both(logits, targets, np.array([4, 5]), np.array([3, 2]), reduction="sum",
                              zero_infinity=True)
    np.testing.assert_allclose(v, tv, rtol=1e-10)
    np.testing.assert_allclose(g, tgr, rtol=1e-8, atol=1e-10)
    # unbatched (T, C)
    lp = F.log_softmax(ax.tensor(logits[:, 0]), -1)
    one = F.ctc_loss(lp, ax.tensor([2, 1]), 6, 2, reduction="none")
    t = torch()
    ref = TF().ctc_loss(t.tensor(logits[:, 0]).log_softmax(-1), t.tensor([2, 1]), t.tensor(6), t.tensor(2),
                        reduction="none")
    assert one.shape == () and np.isclose(one.item(), ref.item(), rtol=1e-10)


def test_ctc_errors():
    lp = F.log_softmax(ax.randn(5, 2, 4), -1)
    tg = ax.tensor([[1, 2], [3, 3]])
    with pytest.raises(ShapeError, match="input_lengths"):
        F.ctc_loss(lp, tg, [5, 6], [2, 2])
    with pytest.raises(ShapeError, match="input_lengths"):
        F.ctc_loss(lp, tg, [5], [2, 2])
    with pytest.raises(ShapeError, match="padded targets"):
        F.ctc_loss(lp, tg, [5, 5], [2, 3])
    with pytest.raises(ShapeError, match="concatenated"):
        F.ctc_loss(lp, ax.tensor([1, 2, 3]), [5, 5], [2, 2])
    with pytest.raises(IndexingError, match="blank"):
        F.ctc_loss(lp, tg, [5, 5], [2, 2], blank=4)
    with pytest.raises(IndexingError, match="labels"):
        F.ctc_loss(lp, ax.tensor([[1, 7], [3, 3]]), [5, 5], [2, 2])
    with pytest.raises(ShapeError, match="log_probs"):
        F.ctc_loss(ax.randn(2, 2, 2, 2), tg, [2, 2], [2, 2])
    with pytest.raises(DTypeError, match="targets"):
        F.ctc_loss(lp, ax.rand(2, 2), [5, 5], [2, 2])


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_class_target_on_another_device_is_named() -> None:
    x = ax.randn(4, 5, device="cuda")
    with pytest.raises(DeviceError, match="target is on cpu but input is on cuda"):
        F.cross_entropy(x, ax.tensor([0, 1, 2, 3]))


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_cuda_kernels_against_float64(reduction: str, dtype: str) -> None:
    # the CUDA kernels (a block per row) on wide rows, many rows and ignored targets, against the NumPy reference
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300, 1000)) * 4).astype(dtype)
    t = rng.integers(0, 1000, 300)
    t[::7] = -100
    g = rng.standard_normal(300) if reduction == "none" else np.float64(1.7)
    xc = ax.tensor(x, device="cuda", requires_grad=True)
    loss = F.cross_entropy(xc, ax.tensor(t, device="cuda"), reduction=reduction)
    loss.backward(ax.tensor(g.astype(dtype), device="cuda"))
    x64 = x.astype(np.float64)
    lp = x64 - logsumexp(x64, 1, keepdims=True)
    valid = t != -100
    rows = -lp[np.arange(300), np.where(valid, t, 0)] * valid
    ref = {"mean": rows.sum() / valid.sum(), "sum": rows.sum(), "none": rows}[reduction]
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(loss.detach().cpu().numpy(), ref, rtol=tol, atol=tol)
    coef = {"mean": g / valid.sum(), "sum": g, "none": g}[reduction] * valid
    onehot = np.zeros_like(x64)
    onehot[np.arange(300), np.where(valid, t, 0)] = 1
    grad = (np.exp(lp) - onehot) * np.reshape(coef, (-1, 1))
    np.testing.assert_allclose(xc.grad.cpu().numpy(), grad, rtol=tol, atol=tol)


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_cross_entropy_cuda_checks_targets_and_ignores_all() -> None:
    x = ax.randn(4, 5, device="cuda", requires_grad=True)
    for bad, named in (([0, 1, 5, 3], 5), ([0, -2, 2, 3], -2)):
        with pytest.raises(IndexingError, match=f"target {named} is out of bounds for 5 classes"):
            F.cross_entropy(x, ax.tensor(bad, device="cuda")).item()  # checked once the host reads a value
    # an ignored target may lie outside the classes; a batch of only ignored targets has a 0/0 mean, as PyTorch
    t = ax.tensor([-100, -100, -100, -100], device="cuda")
    assert np.isnan(F.cross_entropy(x, t).item())
    loss = F.cross_entropy(x, t, reduction="sum")
    loss.backward()
    assert loss.item() == 0 and not x.grad.cpu().numpy().any()
    # a 1-D input with a scalar target, and integer targets of another width
    v = ax.randn(6, device="cuda")
    ref = F.cross_entropy(v.cpu(), ax.tensor(4)).item()
    assert F.cross_entropy(v, ax.tensor(4, device="cuda")).item() == pytest.approx(ref, rel=1e-6)
    y = ax.tensor(np.array([1, 0, 4, 2], np.int32), device="cuda")
    np.testing.assert_allclose(F.cross_entropy(x, y).item(), F.cross_entropy(x.cpu(), y.cpu()).item(), rtol=1e-6)
    # a NaN logit makes its row's loss NaN, as on the CPU (the row maximum propagates NaN)
    z = np.zeros((2, 5), np.float32)
    z[1, 3] = np.nan
    rows = F.cross_entropy(ax.tensor(z, device="cuda"), ax.tensor([0, 0], device="cuda"), reduction="none")
    assert np.array_equal(np.isnan(rows.cpu().numpy()), [False, True])


@pytest.mark.gpu
@pytest.mark.skipif(not ax.cuda.is_available(), reason="no CUDA GPU")
def test_cross_entropy_cuda_target_check_waits_for_the_next_sync() -> None:
    # the target range is read back without stalling the host: at the end of the backward if it has arrived, at
    # a read of a value, at synchronize(), or at the next cross entropy; the device stays usable after the error
    from axonml.backend import checks

    x = ax.randn(4, 5, device="cuda", requires_grad=True)
    bad, good = ax.tensor([0, 7, 1, 2], device="cuda"), ax.tensor([0, 4, 1, 2], device="cuda")
    loss = F.cross_entropy(x, bad)
    assert len(checks._PENDING) == 1
    with pytest.raises(IndexingError, match="target 7 is out of bounds for 5 classes"):
        loss.backward()  # raises here when the values have arrived by the end of the backward...
        ax.cuda.synchronize()  # ...else at the next wait for the GPU
    assert not checks._PENDING
    F.cross_entropy(x, bad)
    with pytest.raises(IndexingError, match="target 7"):
        ax.cuda.synchronize()
    F.cross_entropy(x, bad)
    with pytest.raises(IndexingError, match="target 7"):
        F.cross_entropy(x, good)  # the earlier call's error, before this call's work
    F.cross_entropy(x, bad)
    with pytest.raises(IndexingError, match="target 7"):
        ax.ones(2, device="cuda").cpu()
    ref = F.cross_entropy(x.detach().cpu(), good.cpu()).item()
    loss = F.cross_entropy(x, good)
    loss.backward()
    assert loss.item() == pytest.approx(ref, rel=1e-6) and not checks._PENDING
