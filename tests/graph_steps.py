"""The CUDA-graph training recipe the graph tests share: eager steps, then one captured step replayed."""

from __future__ import annotations

from collections.abc import Callable

import axonml as ax

Loss = Callable[[ax.Tensor, ax.Tensor], ax.Tensor]


def eager_step(model: ax.nn.Module, opt: ax.optim.Optimizer, loss_fn: Loss, x: ax.Tensor, y: ax.Tensor) -> ax.Tensor:
    """One training step; its loss."""
    opt.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()
    return loss


def replayed_losses(model: ax.nn.Module, opt: ax.optim.Optimizer, loss_fn: Loss,
                    batches: list[tuple[ax.Tensor, ax.Tensor]], warmup: int = 2,
                    after_step: Callable[[], None] = lambda: None) -> list[float]:
    """Every batch's loss: the first ``warmup`` from eager steps (momentum buffers, kernels, cached geometry),
    the rest from replays of one captured step whose static inputs are refilled from each batch.
    ``after_step()`` runs after each step and replay (a scheduler's step)."""
    losses = []
    for x, y in batches[:warmup]:
        losses.append(float(eager_step(model, opt, loss_fn, x, y).item()))
        after_step()
    static_x, static_y = batches[0][0].clone(), batches[0][1].clone()
    g = ax.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with ax.cuda.graph(g):
        assert ax.cuda.is_current_stream_capturing()
        static_loss = loss_fn(model(static_x), static_y)
        static_loss.backward()
        opt.step()
    assert not ax.cuda.is_current_stream_capturing()
    for x, y in batches[warmup:]:
        static_x.copy_(x)
        static_y.copy_(y)
        g.replay()
        losses.append(float(static_loss.item()))
        after_step()
    return losses
