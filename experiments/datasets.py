"""Image-classification datasets for the experiments, without torchvision.

``digits`` is scikit-learn's bundled copy (8x8, 1,797 images, no download): the embedded default.
``text`` is next-character prediction on text files on the machine (the Python standard
library's sources by default; :mod:`experiments.text`). ``mnist`` and ``fashion_mnist`` read
the four IDX files (raw or ``.gz``) and ``cifar10`` reads the
python pickle batches, all from ``DatasetSpec.root``; missing files are downloaded with
``urllib`` when ``download`` is true and the machine is online, else a ``FileNotFoundError`` names
the files and the folder.

Every dataset comes back as a :class:`DataSplit` of two :class:`ImageDataset` (images ``N x C x H
x W`` scaled to ``[0, 1]``, integer labels), iterated in batches with :func:`batches`.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from experiments.errors import DatasetNotFoundError
from experiments.text import load_text

__all__ = [
    "DatasetNotFoundError",
    "DatasetSpec",
    "ImageDataset",
    "DataSplit",
    "DATASETS",
    "DATASET_SHAPES",
    "load_dataset",
    "check_available",
    "missing_files",
    "batches",
    "read_idx",
    "write_idx",
]

log = logging.getLogger(__name__)

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
}
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
_CIFAR_TEST = ["test_batch"]
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "text")


@dataclass
class DatasetSpec:
    """Which dataset to load and how much of it.

    Attributes:
        name: one of ``DATASETS``.
        root: folder holding the files (ignored by ``digits``).
        download: fetch missing files when online.
        test_fraction: share of ``digits`` held out for testing, in (0, 1); the split is stratified
            and seeded by ``seed`` (the other datasets have fixed test sets).
        max_train: keep at most this many training images (a seeded random subset), or ``None``.
        max_test: keep at most this many test images, or ``None``.
        seed: seed of the split and of the subsets.
        text_dir: ``text`` only: folder of text files (``None``: the Python standard library's
            own source folder, present on every machine that runs this).
        text_glob: ``text`` only: which files of ``text_dir`` to read (a ``pathlib`` glob).
        seq_len: ``text`` only: characters in each input window (the label is the next one).
        max_chars: ``text`` only: read at most this many characters (files in sorted order).
    """

    name: str = "digits"
    root: str = "data"
    download: bool = True
    test_fraction: float = 0.25
    max_train: Optional[int] = None
    max_test: Optional[int] = None
    seed: int = 0
    text_dir: Optional[str] = None
    text_glob: str = "**/*.py"
    seq_len: int = 32
    max_chars: int = 2_000_000

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"dataset.name must be one of {DATASETS}, got {self.name!r}")
        if not isinstance(self.download, bool):
            raise TypeError(
                f"dataset.download must be a bool (true or false), got {self.download!r}"
            )
        if not 0.0 < float(self.test_fraction) < 1.0:
            raise ValueError(f"dataset.test_fraction must be in (0, 1), got {self.test_fraction}")
        for key in ("max_train", "max_test"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or int(value) < 1):
                raise ValueError(f"dataset.{key} must be a positive int or null, got {value!r}")
        for key, low in (("seq_len", 1), ("max_chars", 2)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"dataset.{key} must be an int >= {low}, got {value!r}")


class ImageDataset:
    """Images (stored compactly, ``uint8`` or float) and integer labels.

    ``images[i] * scale`` is the image in ``[0, 1]``, shape ``(C, H, W)``.
    """

    def __init__(self, images: Tensor, labels: Tensor, scale: float = 1.0) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be N x C x H x W, got shape {tuple(images.shape)}")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels.long()
        self.scale = float(scale)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The float images in ``[0, 1]`` and the labels at ``index``."""
        return self.images[index].float() * self.scale, self.labels[index]

    def subset(self, n: Optional[int], seed: int) -> ImageDataset:
        """A seeded random subset of at most ``n`` items (``self`` when ``n`` is ``None``)."""
        if n is None or n >= len(self):
            return self
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=gen)[:n].sort().values
        return ImageDataset(self.images[index], self.labels[index], self.scale)


@dataclass
class DataSplit:
    """A train and a test set with their image shape ``(C, H, W)`` and class count."""

    name: str
    train: ImageDataset
    test: ImageDataset
    in_shape: tuple[int, int, int]
    num_classes: int


def batches(
    data: ImageDataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    limit: Optional[int] = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(images, labels)`` batches (a DataLoader without worker processes)."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for k, start in enumerate(range(0, n, batch_size)):
        if limit is not None and k >= limit:
            return
        yield data.batch(order[start : start + batch_size])


# --- file formats ------------------------------------------------------------------------------
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST format), raw or gzip-compressed."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4).astype(np.int64)
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = 4 + 4 * ndim + int(np.prod(dims)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX header says {expected} bytes, file has {len(data)}")
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    return array.reshape(tuple(dims))


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a ``uint8`` array as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def _spellings(name: str) -> list[str]:
    """``name`` as published (``train-images-idx3-ubyte``) and with a dot before ``idx``
    (``train-images.idx3-ubyte``, as some mirrors and unpackers write it), raw or ``.gz``."""
    dotted = name.replace("-idx", ".idx")
    return [n + ext for n in dict.fromkeys((name, dotted)) for ext in ("", ".gz")]


def _find(root: str, name: str) -> Optional[str]:
    for candidate in _spellings(name):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    return None


def _near_matches(root: str) -> list[str]:
    """Files in ``root`` that look like IDX files but match no expected name."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    known = {n for name in _IDX_FILES.values() for n in _spellings(name)}
    return [n for n in names if ("idx" in n.lower() or "ubyte" in n.lower()) and n not in known]


def _cifar_dir(root: str) -> str:
    nested = os.path.join(root, _CIFAR_DIR)
    return nested if os.path.isdir(nested) else root


def missing_files(spec: DatasetSpec) -> list[str]:
    """The files of ``spec`` that are not in ``spec.root`` (empty for ``digits`` and ``text``,
    which need no download; ``text`` names a missing folder when it loads)."""
    if spec.name in ("digits", "text"):
        return []
    if spec.name in ("mnist", "fashion_mnist"):
        return [n for n in _IDX_FILES.values() if _find(spec.root, n) is None]
    folder = _cifar_dir(spec.root)
    return [n for n in _CIFAR_TRAIN + _CIFAR_TEST if not os.path.isfile(os.path.join(folder, n))]


def _download(spec: DatasetSpec, missing: list[str]) -> None:
    os.makedirs(spec.root, exist_ok=True)
    if spec.name == "cifar10":
        with tempfile.TemporaryDirectory(dir=spec.root) as tmp:
            archive = os.path.join(tmp, "cifar-10-python.tar.gz")
            log.info("downloading %s", _URLS["cifar10"])
            with (
                urllib.request.urlopen(_URLS["cifar10"], timeout=30) as r,
                open(archive, "wb") as f,
            ):
                shutil.copyfileobj(r, f)
            with tarfile.open(archive, "r:gz") as tar:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12: refuse unsafe members
                    tar.extractall(tmp, filter="data")
                else:
                    tar.extractall(tmp)
            for name in _CIFAR_TRAIN + _CIFAR_TEST + ["batches.meta"]:
                os.replace(os.path.join(tmp, _CIFAR_DIR, name), os.path.join(spec.root, name))
        return
    for name in missing:
        url = _URLS[spec.name] + name + ".gz"
        target = os.path.join(spec.root, name + ".gz")
        log.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=30) as r:
            payload = r.read()
        tmp = target + ".part"
        with open(tmp, "wb") as f:
            f.write(payload)
        os.replace(tmp, target)


def check_available(spec: DatasetSpec) -> None:
    """Make sure the files of ``spec`` are on disk, downloading them if allowed.

    Raises:
        DatasetNotFoundError: (a ``FileNotFoundError``) naming ``dataset.root``, the folder and
            the missing files.
    """
    missing = missing_files(spec)
    if not missing:
        return
    reason = "dataset.download is false"
    if spec.download:
        try:
            _download(spec, missing)
        except Exception as err:  # offline, proxy, HTTP error: say so in the message
            reason = f"the download failed ({type(err).__name__}: {err})"
        missing = missing_files(spec)
        if not missing:
            return
    where = os.path.abspath(spec.root)
    gz = " (raw or .gz)" if spec.name != "cifar10" else ""
    near = _near_matches(spec.root) if spec.name != "cifar10" else []
    found = f" Found similar files that match no expected name: {', '.join(near)}." if near else ""
    raise DatasetNotFoundError(
        f"dataset={spec.name}: missing {', '.join(missing)}{gz} in dataset.root={where} and "
        f"{reason}. Put the files there (source: {_URLS[spec.name]}) or set dataset.root=<folder>."
        f"{found}"
    )


# --- loaders -------------------------------------------------------------------------------------
def _load_digits(spec: DatasetSpec) -> tuple[ImageDataset, ImageDataset, int]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # 0..16
    labels = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, labels, test_size=spec.test_fraction, random_state=spec.seed, stratify=labels
    )
    scale = 1.0 / 16.0
    train = ImageDataset(torch.from_numpy(x_tr), torch.from_numpy(y_tr), scale)
    test = ImageDataset(torch.from_numpy(x_te), torch.from_numpy(y_te), scale)
    return train, test, 10


def _load_idx(spec: DatasetSpec) -> tuple[ImageDataset, ImageDataset, int]:
    def part(images_key: str, labels_key: str) -> ImageDataset:
        images = read_idx(_find(spec.root, _IDX_FILES[images_key]))
        labels = read_idx(_find(spec.root, _IDX_FILES[labels_key]))
        images = torch.from_numpy(images.copy()).unsqueeze(1)  # N x 1 x H x W, uint8
        return ImageDataset(images, torch.from_numpy(labels.astype(np.int64)), 1.0 / 255.0)

    return part("train_images", "train_labels"), part("test_images", "test_labels"), 10


def _read_cifar_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    data = entry.get(b"data", entry.get("data"))
    labels = entry.get(b"labels", entry.get("labels"))
    return np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(labels)


def _load_cifar10(spec: DatasetSpec) -> tuple[ImageDataset, ImageDataset, int]:
    folder = _cifar_dir(spec.root)

    def part(names: list[str]) -> ImageDataset:
        pieces = [_read_cifar_batch(os.path.join(folder, n)) for n in names]
        images = torch.from_numpy(np.concatenate([p[0] for p in pieces]))
        labels = torch.from_numpy(np.concatenate([p[1] for p in pieces]).astype(np.int64))
        return ImageDataset(images, labels, 1.0 / 255.0)

    return part(_CIFAR_TRAIN), part(_CIFAR_TEST), 10


# (input shape (C, H, W), classes) of each dataset, known without loading it (cost-only runs)
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 28, 28), 10),
    "fashion_mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
}

_LOADERS = {
    "digits": _load_digits,
    "mnist": _load_idx,
    "fashion_mnist": _load_idx,
    "cifar10": _load_cifar10,
    "text": load_text,
}


def load_dataset(spec: DatasetSpec) -> DataSplit:
    """Load (downloading if needed and allowed) the dataset ``spec`` describes."""
    check_available(spec)
    train, test, num_classes = _LOADERS[spec.name](spec)
    train = train.subset(spec.max_train, spec.seed)
    test = test.subset(spec.max_test, spec.seed + 1)
    in_shape = tuple(int(s) for s in train.images.shape[1:])
    return DataSplit(spec.name, train, test, in_shape, num_classes)
