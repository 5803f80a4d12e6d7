"""Fit a 2-layer MLP classifier on a generated spiral dataset, with raw tensors and autograd.

Everything here is plain axonml: tensors, ops, ``loss.backward()`` and a
hand-written Adam step (the ``nn``/``optim`` packages come later). It needs no
data files and no network: the dataset is generated from a seed.

    python examples/fit.py                  # 600 steps on the CPU
    python examples/fit.py --steps 200 --device cuda
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

import axonml as ax


def spiral(n_per_class: int, n_classes: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points on ``n_classes`` interleaved spiral arms: (N, 2) float32 inputs, (N,) int64 labels."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(n_classes):
        r = np.linspace(0.05, 1.0, n_per_class)
        # 1.25 turns per arm, arms rotated 2 pi / n_classes apart, angular noise blurs the boundaries
        theta = np.linspace(0.0, 2.5 * math.pi, n_per_class) + 2 * math.pi * k / n_classes
        theta = theta + rng.normal(0, noise, n_per_class)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1))
        ys.append(np.full(n_per_class, k))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64)


def init_params(n_in: int, n_hidden: int, n_out: int, seed: int, device: str) -> list[ax.Tensor]:
    """He-initialized weights and zero biases, as leaf tensors that require grad."""
    rng = np.random.default_rng(seed + 1)

    def leaf(a: np.ndarray) -> ax.Tensor:
        return ax.tensor(a.astype(np.float32), device=device, requires_grad=True)

    w1 = leaf(rng.normal(0, math.sqrt(2 / n_in), (n_in, n_hidden)))
    b1 = leaf(np.zeros(n_hidden))
    w2 = leaf(rng.normal(0, math.sqrt(2 / n_hidden), (n_hidden, n_out)))
    b2 = leaf(np.zeros(n_out))
    return [w1, b1, w2, b2]


def forward(params: list[ax.Tensor], x: ax.Tensor) -> ax.Tensor:
    """Logits of the MLP: (N, 2) -> (N, H) -> (N, C)."""
    w1, b1, w2, b2 = params
    h = (x @ w1 + b1).relu()  # (N, H)
    return h @ w2 + b2  # (N, C)


def cross_entropy(logits: ax.Tensor, target: ax.Tensor) -> ax.Tensor:
    """Mean negative log-likelihood of ``target`` under softmax(logits), computed stably."""
    m = logits.amax(dim=1, keepdim=True).detach()  # shifting by a constant does not change the result
    log_z = (logits - m).exp().sum(dim=1, keepdim=True).log() + m  # (N, 1)
    picked = logits[ax.arange(logits.shape[0], device=logits.device), target]  # (N,)
    return (log_z.reshape(-1) - picked).sum() / logits.shape[0]


class Adam:
    """Adam (Kingma & Ba) written with tensor ops under ``no_grad``, updating the leaves in place."""

    def __init__(self, params: list[ax.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [ax.zeros_like(p) for p in params]
        self.v = [ax.zeros_like(p) for p in params]
        self.t = 0

    @ax.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        scale = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)  # bias correction folded into lr
        for p, m, v in zip(self.params, self.m, self.v):
            g = p.grad
            m.mul_(b1).add_(g * (1 - b1))
            v.mul_(b2).add_(g * g * (1 - b2))
            p.sub_(m / (v.sqrt() + self.eps) * scale)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def accuracy(logits: ax.Tensor, target: ax.Tensor) -> float:
    """Fraction of rows whose largest logit is the target class."""
    pred = logits.argmax(dim=1)
    return float((pred == target).float().sum().item()) / target.shape[0]


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600, help="full-batch training steps")
    p.add_argument("--hidden", type=int, default=64, help="hidden units")
    p.add_argument("--lr", type=float, default=0.02, help="Adam learning rate")
    p.add_argument("--points", type=int, default=200, help="points per class")
    p.add_argument("--classes", type=int, default=3, help="spiral arms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (needs CuPy and a GPU)")
    args = p.parse_args(argv)

    x_np, y_np = spiral(args.points, args.classes, noise=0.2, seed=args.seed)
    perm = np.random.default_rng(args.seed + 2).permutation(len(y_np))
    split = int(0.8 * len(perm))  # hold out a fifth of the points to measure generalization
    tr, te = perm[:split], perm[split:]
    x_tr, y_tr = ax.tensor(x_np[tr], device=args.device), ax.tensor(y_np[tr], device=args.device)
    x_te, y_te = ax.tensor(x_np[te], device=args.device), ax.tensor(y_np[te], device=args.device)
    print(f"spiral: {len(tr)} train / {len(te)} test points, {args.classes} classes, device {x_tr.device}")

    params = init_params(2, args.hidden, args.classes, args.seed, args.device)
    opt = Adam(params, lr=args.lr)
    every = max(1, args.steps // 10)
    first_loss = loss_value = float("nan")
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        loss = cross_entropy(forward(params, x_tr), y_tr)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_value = loss.item()
        if step == 1:
            first_loss = loss_value
        if step == 1 or step % every == 0 or step == args.steps:
            print(f"step {step:5d}  loss {loss_value:.4f}")
    elapsed = time.perf_counter() - t0

    with ax.no_grad():
        train_acc = accuracy(forward(params, x_tr), y_tr)
        test_acc = accuracy(forward(params, x_te), y_te)
    print(f"trained {args.steps} steps in {elapsed:.2f}s ({1e3 * elapsed / max(args.steps, 1):.2f} ms/step)")
    print(f"final loss {loss_value:.4f} (first {first_loss:.4f})  train accuracy {train_acc:.3f}  "
          f"test accuracy {test_acc:.3f}  (chance {1 / args.classes:.3f})")
    return {"first_loss": first_loss, "loss": loss_value, "train_accuracy": train_acc, "test_accuracy": test_acc}


if __name__ == "__main__":
    main()
