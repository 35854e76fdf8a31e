"""The ``text`` dataset: next-character prediction on text files already on the machine.

By default the corpus is the Python standard library's own source (``*.py`` under the folder
``sysconfig`` names, ``site-packages`` excluded), so every machine that runs the experiments has
it; ``dataset.text_dir`` (and ``dataset.text_glob``, matched with ``fnmatch`` against each
path relative to it) point it at any folder of text files. Files
are read in sorted order up to ``dataset.max_chars`` characters; every ``round(1 /
test_fraction)``-th file goes to the test split, so no file is in both. Each sample is a window
of ``dataset.seq_len`` characters (integer tokens) and its label is the character that follows;
windows do not overlap. The vocabulary is fixed (``string.printable``; any other character is
token 0), so models and checkpoints fit every corpus.
"""

from __future__ import annotations

import fnmatch
import os
import pathlib
import string
import sysconfig
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from experiments.errors import DatasetNotFoundError

__all__ = ["VOCAB", "SequenceDataset", "encode", "load_text", "text_files"]

#: token ``i + 1`` is ``VOCAB[i]``; token 0 stands for every other character
VOCAB = string.printable
_TABLE = np.zeros(128, dtype=np.int64)
for _i, _ch in enumerate(VOCAB):
    _TABLE[ord(_ch)] = _i + 1


class SequenceDataset:
    """Token windows ``(N, T)`` (``int64``) and their labels; the interface of
    :class:`~experiments.datasets.ImageDataset` (``batch``, ``subset``, ``len``)."""

    def __init__(self, tokens: Tensor, labels: Tensor) -> None:
        if tokens.ndim != 2 or len(tokens) != len(labels):
            raise ValueError(
                f"tokens must be N x T with one label each, got {tuple(tokens.shape)} tokens "
                f"and {len(labels)} labels"
            )
        self.tokens = tokens.long()
        self.labels = labels.long()

    @property
    def images(self) -> Tensor:
        """The inputs (named as the image datasets' so the pipeline reads shapes alike)."""
        return self.tokens

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        return self.tokens[index], self.labels[index]

    def subset(self, n: Optional[int], seed: int) -> SequenceDataset:
        if n is None or n >= len(self):
            return self
        gen = torch.Generator().manual_seed(seed)
        index = torch.randperm(len(self), generator=gen)[:n].sort().values
        return SequenceDataset(self.tokens[index], self.labels[index])


def encode(text: str) -> np.ndarray:
    """Token ids of ``text`` (``int64``)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.where(codes < 128, _TABLE[np.minimum(codes, 127)], 0)


def text_files(spec: Any) -> tuple[pathlib.Path, list[pathlib.Path]]:
    """The folder and the sorted files of the corpus ``spec`` describes."""
    default = spec.text_dir is None
    root = pathlib.Path(sysconfig.get_paths()["stdlib"] if default else spec.text_dir)
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"dataset=text: dataset.text_dir={os.path.abspath(root)} is not a folder; set it to "
            "a folder of text files (or null for the Python standard library's sources)"
        )
    pattern = spec.text_glob
    files = []
    for folder, dirs, names in os.walk(root):
        # installed packages are not the standard library; caches are not text
        dirs[:] = sorted(
            d for d in dirs if d != "__pycache__" and not (default and d == "site-packages")
        )
        for name in names:
            rel = os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
            if fnmatch.fnmatch(rel, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(rel, pattern[3:])
            ):
                files.append(pathlib.Path(folder, name))
    files.sort()
    if not files:
        raise DatasetNotFoundError(
            f"dataset=text: no file matches dataset.text_glob={spec.text_glob!r} in "
            f"dataset.text_dir={os.path.abspath(root)}"
        )
    return root, files


def _windows(ids: list[np.ndarray], length: int) -> tuple[Tensor, Tensor]:
    joined = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    n = max(0, (len(joined) - 1) // length)
    if n == 0:
        return torch.zeros(0, length, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    starts = np.arange(n) * length
    tokens = joined[starts[:, None] + np.arange(length)]
    labels = joined[starts + length]
    return torch.from_numpy(tokens), torch.from_numpy(labels)


def load_text(spec: Any) -> tuple[SequenceDataset, SequenceDataset, int]:
    """Train and test windows of the corpus and the vocabulary size (the class count)."""
    root, files = text_files(spec)
    every = max(2, round(1.0 / float(spec.test_fraction)))
    parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
    total = 0
    for k, path in enumerate(files):
        text = path.read_text(encoding="utf-8", errors="replace")[: spec.max_chars - total]
        parts[k % every == every - 1].append(encode(text))
        total += len(text)
        if total >= spec.max_chars:
            break
    train, test = (SequenceDataset(*_windows(parts[t], spec.seq_len)) for t in (False, True))
    if len(train) == 0 or len(test) == 0:
        raise DatasetNotFoundError(
            f"dataset=text: {total} characters in {min(k + 1, len(files))} file(s) of "
            f"{os.path.abspath(root)} give no {'training' if not len(train) else 'test'} window "
            f"of seq_len={spec.seq_len}; raise dataset.max_chars or add files"
        )
    return train, test, len(VOCAB) + 1
