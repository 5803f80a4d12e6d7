"""Train an MLP or LeNet-5 on MNIST with axonml's nn, optim and data packages.

    python examples/mnist.py                         # MLP, 2 epochs, on ../shared/data/mnist or the fallback
    python examples/mnist.py --model lenet --epochs 2
    python examples/mnist.py --data ~/mnist --device cuda
    python examples/mnist.py --limit 5000 --epochs 1 # a quick run on the first 5,000 training images

Data (see _mnist_data.py): the MNIST IDX files in --data, else ../shared/data/mnist beside
the repository, else the 1,797 real handwritten digits that ship inside scikit-learn
(`pip install -e '.[examples]'`), scaled to 28x28. Without any of them it stops with a
one-line message: it never trains on random numbers.

Training: Adam with the learning rate annealed to zero on a cosine over the run (one
scheduler step per batch), cross-entropy loss, shuffled mini-batches from a seeded
generator. The same --seed gives bit-identical weights. --save PATH writes a checkpoint
(model, optimizer, scheduler, shuffle generator) after every epoch (``ckpt-{epoch}.pkl``
keeps one per epoch), and --resume PATH continues from one, given the same other
arguments: the resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _mnist_data sits beside this file

import _mnist_data as mdata

import axonml as ax
from axonml import nn, optim
from axonml.data import DataLoader, TensorDataset

DEFAULT_LR = {"mlp": 3e-3, "lenet": 3e-3}
DEFAULT_BATCH = {"mlp": 64, "lenet": 64}


class LeNet5(nn.Module):
    """LeNet-5 as usually trained today: ReLU and max pooling; (B, 1, 28, 28) -> (B, 10) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # (B, 6, 14, 14)
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # (B, 16, 5, 5)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 400)
            nn.Linear(400, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(),
            nn.Linear(84, 10),
        )

    def forward(self, x: ax.Tensor) -> ax.Tensor:
        return self.classifier(self.features(x))


def mlp() -> nn.Module:
    """The 784-256-128-10 ReLU perceptron; (B, 1, 28, 28) -> (B, 10) logits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10),
    )


def build_model(name: str) -> nn.Module:
    """``"mlp"`` or ``"lenet"``, initialized from axonml's default generator (seed it first)."""
    if name == "mlp":
        return mlp()
    if name == "lenet":
        return LeNet5()
    raise ValueError(f"unknown model {name!r}: expected 'mlp' or 'lenet'")


class Trainer:
    """The model, optimizer, scheduler and shuffle order of one run, with checkpoints of all four."""

    def __init__(self, model_name: str, train: mdata.Split, test: mdata.Split, *, epochs: int, batch_size: int,
                 lr: float, device: str, seed: int, steps_per_epoch: int | None = None) -> None:
        self.device = device
        self.epoch = 0  # epochs completed
        ax.manual_seed(seed)  # the initial weights
        self.model = build_model(model_name).to(device)
        # normalize with the training set's statistics (MNIST: 0.1307, 0.3081)
        mean, std = float(train.images.mean()), float(train.images.std())
        self.train_x = ax.tensor((train.images - mean) / std)
        self.train_y = ax.tensor(train.labels)
        self.test_x = ax.tensor((test.images - mean) / std)
        self.test_y = ax.tensor(test.labels)
        self.generator = ax.Generator().manual_seed(seed)  # the shuffle order, apart from the weights' generator
        self.loader = DataLoader(TensorDataset(self.train_x, self.train_y), batch_size=batch_size, shuffle=True,
                                 generator=self.generator)
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = optim.Adam(self.model.parameters(), lr=lr)
        self.steps_per_epoch = min(len(self.loader), steps_per_epoch or len(self.loader))
        total = epochs * self.steps_per_epoch
        self.scheduler = optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(total, 1))

    def train_epoch(self) -> dict[str, float]:
        """One pass over the shuffled training set (or its first ``steps_per_epoch`` batches): loss, accuracy, speed."""
        self.model.train()
        loss_sum = correct = seen = 0.0
        t0 = time.perf_counter()
        for step, (xb, yb) in enumerate(self.loader):
            if step >= self.steps_per_epoch:
                break
            xb, yb = xb.to(self.device), yb.to(self.device)
            logits = self.model(xb)
            loss = self.loss_fn(logits, yb)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            n = yb.shape[0]
            loss_sum += loss.item() * n
            correct += (logits.argmax(dim=1) == yb).sum().item()
            seen += n
        elapsed = time.perf_counter() - t0
        self.epoch += 1
        return {"loss": loss_sum / max(seen, 1), "accuracy": correct / max(seen, 1), "seconds": elapsed,
                "images_per_s": seen / elapsed if elapsed > 0 else 0.0}

    def evaluate(self, batch_size: int = 1000) -> float:
        """Accuracy on the test split."""
        self.model.eval()
        correct = 0
        with ax.no_grad():
            for i in range(0, self.test_x.shape[0], batch_size):
                xb = self.test_x[i:i + batch_size].to(self.device)
                yb = self.test_y[i:i + batch_size].to(self.device)
                correct += int((self.model(xb).argmax(dim=1) == yb).sum().item())
        return correct / self.test_x.shape[0]

    def weights(self) -> dict[str, np.ndarray]:
        """The model's state as NumPy arrays (copies)."""
        return {k: _to_numpy(v) for k, v in self.model.state_dict().items()}

    def checkpoint(self) -> dict[str, Any]:
        """Everything a resumed run needs, as plain Python and NumPy (picklable without axonml tensors)."""
        return {
            "epoch": self.epoch,
            "model": self.weights(),
            "optimizer": _to_numpy(self.optimizer.state_dict()),
            "scheduler": self.scheduler.state_dict(),
            "generator": _to_numpy(self.generator.get_state()),
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        """Continue from :meth:`checkpoint`'s dict."""
        self.epoch = ckpt["epoch"]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.generator.set_state(ax.tensor(ckpt["generator"]))

    def save(self, path: str | Path) -> None:
        """Pickle :meth:`checkpoint` to ``path``."""
        with open(path, "wb") as f:
            pickle.dump(self.checkpoint(), f)

    def load(self, path: str | Path) -> None:
        """Restore from a file written by :meth:`save`."""
        with open(path, "rb") as f:
            self.restore(pickle.load(f))  # only load checkpoints you wrote: unpickling runs code


def _to_numpy(obj: Any) -> Any:
    """``obj`` with every axonml Tensor replaced by a NumPy copy (dicts, lists and tuples walked)."""
    if isinstance(obj, ax.Tensor):
        return obj.detach().cpu().numpy().copy()
    if isinstance(obj, dict):
        return {k: _to_numpy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_numpy(v) for v in obj)
    return obj


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="folder with the four MNIST IDX files, or 'digits' for scikit-learn's "
                                                "(default: ../shared/data/mnist if present, else digits)")
    p.add_argument("--model", choices=("mlp", "lenet"), default="mlp")
    p.add_argument("--epochs", type=int, default=None, help="default 2 on MNIST, 10 on the 1,797 digits")
    p.add_argument("--batch-size", type=int, default=None, help="default 64")
    p.add_argument("--lr", type=float, default=None, help="peak Adam learning rate (default 3e-3)")
    p.add_argument("--device", default="cpu", help="'cpu' or 'cuda' (needs CuPy and a GPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on the first N training images only")
    p.add_argument("--steps", type=int, default=None, help="stop each epoch after this many batches")
    p.add_argument("--save", default=None, help="write a checkpoint here after every epoch ('{epoch}' in the name "
                                                "is replaced by the epoch number)")
    p.add_argument("--resume", default=None, help="continue from a checkpoint written by --save")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        source = mdata.find_source(args.data)
    except mdata.DataNotFoundError as e:
        sys.exit(f"mnist.py: {e}")
    train, test = mdata.load(source)
    if args.limit is not None:
        train = mdata.Split(train.images[:args.limit], train.labels[:args.limit])
    epochs = args.epochs or (2 if source.kind == "mnist" else 10)
    batch = args.batch_size or DEFAULT_BATCH[args.model]
    lr = args.lr if args.lr is not None else DEFAULT_LR[args.model]
    print(f"data: {source.description}")
    print(f"{len(train.labels)} training / {len(test.labels)} test images; model {args.model}, batch {batch}, "
          f"Adam lr {lr:g} (cosine to 0), {epochs} epoch(s), seed {args.seed}, device {args.device}")
    trainer = Trainer(args.model, train, test, epochs=epochs, batch_size=batch, lr=lr, device=args.device,
                      seed=args.seed, steps_per_epoch=args.steps)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    print(f"{n_params:,} parameters")
    if args.resume:
        trainer.load(args.resume)
        print(f"resumed from {args.resume} after epoch {trainer.epoch}")
    history = []
    while trainer.epoch < epochs:
        stats = trainer.train_epoch()
        stats["test_accuracy"] = trainer.evaluate()
        history.append(stats)
        print(f"epoch {trainer.epoch}  loss {stats['loss']:.4f}  train accuracy {stats['accuracy']:.4f}  "
              f"test accuracy {stats['test_accuracy']:.4f}  {stats['images_per_s']:.0f} images/s "
              f"({stats['seconds']:.1f}s)")
        if args.save:
            trainer.save(args.save.replace("{epoch}", str(trainer.epoch)))
    final = history[-1]["test_accuracy"] if history else trainer.evaluate()
    print(f"final test accuracy {final:.4f} (chance 0.1000)")
    return {"history": history, "test_accuracy": final, "trainer": trainer}


if __name__ == "__main__":
    main()
