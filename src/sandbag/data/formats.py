"""File formats for image-classification data: IDX (raw or gzip), CIFAR-10 binary and NumPy .npz.

`read_idx` returns one IDX file's array as stored. The data-set readers (`read_idx_dir`, `read_cifar10_dir`,
`read_npz`) return NumPy arrays (x_train, y_train, x_test, y_test): images (N, C, H, W) as float32, uint8 pixels
scaled to [0, 1], and labels as int64; `read_npz` also returns the number of classes. Every header is checked
against the bytes actually present before anything is allocated, and every bad input raises `DataError` with a
one-line message. Building a `Dataset` from the arrays is left to `sandbag.data`, which imports this module (never
the other way round).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sandbag.errors import DataError, one_line

# Big-endian, as the IDX format stores every multi-byte value.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# The four files of an IDX data set, by role; each may also end in .gz, or have ".idx" for "-idx"
# (train-images.idx3-ubyte).
IDX_FILES = {
    "train images": "train-images-idx3-ubyte",
    "train labels": "train-labels-idx1-ubyte",
    "test images": "t10k-images-idx3-ubyte",
    "test labels": "t10k-labels-idx1-ubyte",
}
_GZIP_MAGIC = b"\x1f\x8b"
# Decompressed data is read in bounded chunks so a header claiming terabytes allocates no more than is present.
_READ_CHUNK = 16 * 2**20
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error, OSError)

_CIFAR_SIDE = 32
_CIFAR_RECORD = 1 + 3 * _CIFAR_SIDE * _CIFAR_SIDE
_CIFAR_SUBDIR = "cifar-10-batches-bin"

_NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
# An optional scalar: the number of classes, for data whose labels do not all occur (the model gets that many
# outputs, and every label must be below it).
_NPZ_NUM_CLASSES = "num_classes"
# What zipfile and numpy raise on a damaged archive or .npy header; all of them mean "bad file", not a bug.
_NPZ_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    NotImplementedError,
    UnicodeDecodeError,
    struct.error,
    zlib.error,
    OverflowError,
    RuntimeError,  # zipfile: "File is encrypted, password required"
    SyntaxError,  # numpy parses the .npy header as a Python literal
    tokenize.TokenError,
)
# A label of 10**9 would make a model with a billion outputs; no image-classification data set here needs more.
_MAX_CLASSES = 10_000


# ---------------------------------------------------------------------------------------------------------
# IDX


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (raw or gzip-compressed) into a native-endian array of the shape its header gives."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == _GZIP_MAGIC
        return _read_idx_gzip(path) if compressed else _read_idx_raw(path)
    except _GZIP_ERRORS as e:
        raise DataError(f"{path}: unreadable or corrupt IDX/gzip file ({one_line(e, 160)})") from e


def _read_idx_raw(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        dtype, dims, header_size = _read_idx_header(f, path)
        expected = header_size + math.prod(dims) * dtype.itemsize
        actual = os.fstat(f.fileno()).st_size
        if actual != expected:
            raise DataError(
                f"{path}: IDX header says {dims} of {dtype.name} ({expected} bytes) but the file has {actual} bytes"
            )
        payload = f.read(expected - header_size)
    return _idx_array(payload, dtype, dims, path)


def _read_idx_gzip(path: Path) -> np.ndarray:
    isize = _gzip_isize(path)
    with gzip.open(path, "rb") as f:
        dtype, dims, header_size = _read_idx_header(f, path)
        nbytes = math.prod(dims) * dtype.itemsize
        # ISIZE is the uncompressed length mod 2**32: a cheap check before reading anything.
        if (header_size + nbytes) % 2**32 != isize:
            raise DataError(
                f"{path}: IDX header says {dims} of {dtype.name} ({header_size + nbytes} bytes) but the gzip "
                f"trailer says {isize} bytes uncompressed"
            )
        payload = _read_at_most(f, nbytes)
        if len(payload) < nbytes:
            raise DataError(f"{path}: IDX data is truncated: header says {nbytes} bytes, found {len(payload)}")
        # Reading past the end also makes gzip verify the CRC of the stream.
        if f.read(1):
            raise DataError(f"{path}: IDX file has more data than its header says ({dims} of {dtype.name})")
    return _idx_array(payload, dtype, dims, path)


def _gzip_isize(path: Path) -> int:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 18:  # 10-byte gzip header + 8-byte trailer
            raise DataError(f"{path}: gzip file is truncated ({size} bytes)")
        f.seek(size - 4)
        return struct.unpack("<I", f.read(4))[0]


def _read_idx_header(f, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    head = f.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(f"{path}: not an IDX file (it must start with two zero bytes, a type byte and a rank)")
    code, ndim = head[2], head[3]
    if code not in _IDX_DTYPES:
        allowed = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise DataError(f"{path}: IDX type code 0x{code:02X} is not one of {allowed}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header has rank 0; it must have at least one dimension")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise DataError(f"{path}: IDX header is truncated (rank {ndim} needs {4 * ndim} bytes of dimensions)")
    return _IDX_DTYPES[code], struct.unpack(f">{ndim}I", raw_dims), 4 + 4 * ndim


def _read_at_most(f, limit: int) -> bytearray:
    # Chunks start small and double: a read buffer is allocated at its full requested size, so this keeps
    # memory within about twice the data actually present.
    data, chunk_size = bytearray(), 2**16
    while len(data) < limit:
        chunk = f.read(min(chunk_size, limit - len(data)))
        if not chunk:
            break
        data += chunk
        chunk_size = min(2 * chunk_size, _READ_CHUNK)
    return data


def _idx_array(payload, dtype: np.dtype, dims: tuple[int, ...], path: Path) -> np.ndarray:
    if len(payload) != math.prod(dims) * dtype.itemsize:
        raise DataError(f"{path}: IDX data has {len(payload)} bytes, header says {dims} of {dtype.name}")
    return np.frombuffer(payload, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def find_idx_file(directory: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx_dir(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four IDX files in `directory` as (x_train, y_train, x_test, y_test); `name` prefixes errors."""
    if not directory.is_dir():
        raise DataError(f"{name}: directory not found: {directory}")
    paths = {}
    for role, stem in IDX_FILES.items():
        paths[role] = find_idx_file(directory, stem)
        if paths[role] is None:
            raise DataError(f"{name}: {role} file {stem} (or {stem}.gz) not found in {directory}")
    x_train = _idx_images(read_idx(paths["train images"]), paths["train images"])
    y_train = _idx_labels(read_idx(paths["train labels"]), paths["train labels"])
    x_test = _idx_images(read_idx(paths["test images"]), paths["test images"])
    y_test = _idx_labels(read_idx(paths["test labels"]), paths["test labels"])
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{name}: {split} has {len(x)} images but {len(y)} labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{name}: train images are {x_train.shape[2:]} but test images are {x_test.shape[2:]}")
    return x_train, y_train, x_test, y_test


def _idx_images(a: np.ndarray, path: Path) -> np.ndarray:
    if a.ndim != 3:
        raise DataError(f"{path}: IDX images must be 3-D (count, height, width), got shape {a.shape}")
    return _as_unit_images(a[:, None], path)


def _idx_labels(a: np.ndarray, path: Path) -> np.ndarray:
    if a.ndim != 1:
        raise DataError(f"{path}: IDX labels must be 1-D, got shape {a.shape}")
    return _check_labels(a, path, num_classes=10)


# ---------------------------------------------------------------------------------------------------------
# shared checks for file formats


def _as_unit_images(x: np.ndarray, source) -> np.ndarray:
    """uint8 pixels scaled to [0, 1]; float pixels kept as they are; anything else refused."""
    if x.size == 0:
        raise DataError(f"{source}: no image data (shape {x.shape})")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    if x.dtype.kind == "f":
        with np.errstate(over="ignore"):  # values beyond float32 become inf and are refused just below
            out = x.astype(np.float32)
        if not np.isfinite(out).all():
            raise DataError(f"{source}: images contain NaN or infinite values (or values beyond float32)")
        return out
    raise DataError(f"{source}: images must be uint8 (0..255) or floating point, got {x.dtype}")


def _check_labels(y: np.ndarray, source, num_classes: int | None) -> np.ndarray:
    if y.size == 0:
        raise DataError(f"{source}: no labels")
    if y.dtype.kind not in "iu":
        raise DataError(f"{source}: labels must be integers, got {y.dtype}")
    low, high = int(y.min()), int(y.max())
    top = (num_classes if num_classes is not None else _MAX_CLASSES) - 1
    if low < 0 or high > top:
        raise DataError(f"{source}: labels must be in 0..{top}, found {low}..{high}")
    return y.astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# CIFAR-10 binary


def read_cifar10_dir(directory: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The CIFAR-10 binary batches in `directory` (or its cifar-10-batches-bin/) as (x_train, y_train, x_test,
    y_test); `name` prefixes errors."""
    if not directory.is_dir():
        raise DataError(f"{name}: directory not found: {directory}")
    if not (directory / "test_batch.bin").is_file() and (directory / _CIFAR_SUBDIR).is_dir():
        directory = directory / _CIFAR_SUBDIR
    test_path = directory / "test_batch.bin"
    if not test_path.is_file():
        raise DataError(f"{name}: {test_path} not found (the CIFAR-10 binary version has test_batch.bin)")
    train_paths = [directory / f"data_batch_{i}.bin" for i in range(1, 6)]
    train_paths = [p for p in train_paths if p.is_file()]
    if not train_paths:
        raise DataError(f"{name}: no data_batch_1.bin .. data_batch_5.bin in {directory}")
    train = [_read_cifar_batch(p) for p in train_paths]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    x_test, y_test = _read_cifar_batch(test_path)
    return x_train, y_train, x_test, y_test


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    size = path.stat().st_size
    if size == 0 or size % _CIFAR_RECORD:
        raise DataError(
            f"{path}: a CIFAR-10 binary batch must be a positive multiple of {_CIFAR_RECORD} bytes "
            f"(1 label byte + 3x32x32 pixels per image), got {size}"
        )
    try:
        records = np.fromfile(path, dtype=np.uint8).reshape(-1, _CIFAR_RECORD)
    except (OSError, ValueError) as e:  # e.g. the file changed size while being read
        raise DataError(f"{path}: cannot read CIFAR-10 batch ({one_line(e, 160)})") from e
    labels = _check_labels(records[:, 0], path, num_classes=10)
    images = records[:, 1:].reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE)
    return _as_unit_images(images, path), labels


# ---------------------------------------------------------------------------------------------------------
# npz


def read_npz(path: Path, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Arrays x_train, y_train, x_test, y_test of an .npz archive as (x_train, y_train, x_test, y_test,
    num_classes), images in (N, C, H, W); `name` prefixes errors. num_classes is the archive's own when it holds
    one, else one more than the largest label (at least 2). Every test label must occur among the training labels:
    a class the model never trains on is a labelling mistake (e.g. 5..14 against 0..9), not a data set."""
    if not path.is_file():
        raise DataError(f"{name}: file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz archive (save one with np.savez(FILE, x_train=..., y_train=...))")
    try:
        # numpy evaluates each .npy header as a Python literal; a damaged one can warn (e.g. about an invalid
        # escape) before it fails, and the failure is what gets reported.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", SyntaxWarning)
            keys = _check_npz_headers(path)
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in keys}
    except DataError:
        raise
    except _NPZ_ERRORS as e:
        raise DataError(f"{path}: not a readable .npz archive ({one_line(e, 160)})") from e
    x_train = _npz_images(arrays["x_train"], f"{path}: x_train")
    x_test = _npz_images(arrays["x_test"], f"{path}: x_test")
    y_train = _npz_labels(arrays["y_train"], f"{path}: y_train")
    y_test = _npz_labels(arrays["y_test"], f"{path}: y_test")
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(f"{path}: x_{split} has {len(x)} images but y_{split} has {len(y)} labels")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{path}: x_train images are {x_train.shape[1:]} (C, H, W) but x_test are {x_test.shape[1:]}")
    given = _npz_num_classes(arrays[_NPZ_NUM_CLASSES], path) if _NPZ_NUM_CLASSES in arrays else None
    _check_label_sets(path, y_train, y_test, given)
    num_classes = given if given is not None else max(2, int(max(y_train.max(), y_test.max())) + 1)
    return x_train, y_train, x_test, y_test, num_classes


def _npz_num_classes(a: np.ndarray, path: Path) -> int:
    if a.size != 1 or a.dtype.kind not in "iu" or not 2 <= int(a.reshape(-1)[0]) <= _MAX_CLASSES:
        shown = a.reshape(-1)[0] if a.size == 1 else f"shape {a.shape}"
        raise DataError(f"{path}: {_NPZ_NUM_CLASSES} must be one integer from 2 to {_MAX_CLASSES}, got {shown} "
                        f"({a.dtype})")
    return int(a.reshape(-1)[0])


def _check_label_sets(path: Path, y_train: np.ndarray, y_test: np.ndarray, num_classes: int | None) -> None:
    """Labels below num_classes (when the archive gives it), and no test label the training labels lack."""
    train, test = np.unique(y_train), np.unique(y_test)
    if num_classes is not None:
        for key, labels in (("y_train", train), ("y_test", test)):
            beyond = labels[labels >= num_classes]
            if beyond.size:
                raise DataError(f"{path}: {key} has {_labels_named(beyond)}, but the archive's num_classes is "
                                f"{num_classes} (labels 0..{num_classes - 1})")
    unseen = np.setdiff1d(test, train)
    if unseen.size:
        verb = "never occurs" if unseen.size == 1 else "never occur"
        raise DataError(f"{path}: test {_labels_named(unseen)} {verb} in y_train (training labels "
                        f"{_label_list(train)}); relabel both splits with the same classes")


def _labels_named(labels: np.ndarray) -> str:
    return ("label " if len(labels) == 1 else "labels ") + _label_list(labels)


def _label_list(labels: np.ndarray, most: int = 8) -> str:
    """Sorted distinct labels as short text, runs of three or more joined: [0 1 2 3 7] -> "0..3, 7"."""
    groups: list[list[int]] = []
    for v in (int(x) for x in np.unique(labels)):
        if groups and v == groups[-1][-1] + 1:
            groups[-1].append(v)
        else:
            groups.append([v])
    parts = [f"{g[0]}..{g[-1]}" if len(g) >= 3 else ", ".join(map(str, g)) for g in groups]
    return ", ".join(parts[:most]) + (", ..." if len(parts) > most else "")


def _check_npz_headers(path: Path) -> list[str]:
    """Compare each needed .npy header with the member's size, because np.load allocates what the header
    claims before it reads a byte; return the keys to read (the four arrays, and num_classes when present)."""
    from numpy.lib import format as npy

    with zipfile.ZipFile(path) as zf:
        members = {n.removesuffix(".npy"): n for n in zf.namelist()}
        missing = [key for key in _NPZ_ARRAYS if key not in members]
        if missing:
            raise DataError(
                f"{path}: missing array(s) {', '.join(missing)}; an npz data set needs {', '.join(_NPZ_ARRAYS)}"
            )
        keys = [*_NPZ_ARRAYS, *([_NPZ_NUM_CLASSES] if _NPZ_NUM_CLASSES in members else [])]
        for key in keys:
            info = zf.getinfo(members[key])
            with zf.open(info) as f:
                version = npy.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = npy.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = npy.read_array_header_2_0(f)
                else:
                    raise DataError(f"{path}: {key} uses .npy format version {version}; 1.0 and 2.0 are read")
                if dtype.hasobject:
                    raise DataError(f"{path}: {key} is an object array; save plain numeric arrays")
                expected = f.tell() + math.prod(shape) * dtype.itemsize
                if expected != info.file_size:
                    raise DataError(
                        f"{path}: {key} header says shape {shape} of {dtype} but the member has {info.file_size} bytes"
                    )
    return keys


def _npz_images(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        pass
    elif x.ndim == 4 and x.shape[3] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        side = math.isqrt(x.shape[1])
        x = x.reshape(len(x), 1, side, side)
    else:
        raise DataError(
            f"{source}: shape {x.shape} is not (N, H, W), (N, C, H, W), (N, H, W, C) with C 1 or 3, "
            "or (N, D) with D a perfect square"
        )
    return _as_unit_images(x, source)


def _npz_labels(y: np.ndarray, source: str) -> np.ndarray:
    if y.ndim != 1:
        hint = "; flatten them with y.ravel()" if y.ndim == 2 and y.shape[1] == 1 else ""  # Keras' CIFAR-10 labels
        raise DataError(f"{source}: labels must be 1-D (N,), got shape {y.shape}{hint}")
    return _check_labels(y, source, num_classes=None)
