"""Dataset loaders on small IDX and pickle files the tests write, and the bundled digits."""

from __future__ import annotations

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from experiments.datasets import (
    DatasetSpec,
    batches,
    load_dataset,
    missing_files,
    read_idx,
    write_idx,
)

IDX_NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _write_mnist_like(root, n_train=12, n_test=5, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        IDX_NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        IDX_NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    os.makedirs(root, exist_ok=True)
    for name, array in arrays.items():
        write_idx(os.path.join(root, name + (".gz" if gz else "")), array)
    return arrays


def _write_cifar_like(root, per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        with open(os.path.join(root, name), "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = str(tmp_path / ("a.idx" + (".gz" if gz else "")))
    write_idx(path, array)
    np.testing.assert_array_equal(read_idx(path), array)


def test_idx_rejects_a_file_that_is_not_idx(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x03\x04hello")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(str(path))


def test_idx_rejects_a_truncated_file(tmp_path):
    path = str(tmp_path / "t.gz")
    write_idx(path, np.zeros((3, 4, 4), dtype=np.uint8))
    with gzip.open(path, "rb") as f:
        data = f.read()
    with gzip.open(path, "wb") as f:
        f.write(data[:-5])
    with pytest.raises(ValueError, match="header says"):
        read_idx(path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_loads_scaled_images(tmp_path, name, gz):
    arrays = _write_mnist_like(tmp_path, gz=gz)
    split = load_dataset(DatasetSpec(name=name, root=str(tmp_path), download=False))
    assert split.in_shape == (1, 28, 28) and split.num_classes == 10
    assert (len(split.train), len(split.test)) == (12, 5)
    x, y = split.train.batch(torch.arange(12))
    assert x.dtype == torch.float32 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    torch.testing.assert_close(x[:, 0] * 255, torch.from_numpy(arrays[IDX_NAMES[0]]).float())
    assert y.tolist() == arrays[IDX_NAMES[1]].tolist()


def test_cifar10_reads_pickle_batches(tmp_path):
    written = _write_cifar_like(tmp_path / "cifar-10-batches-py")
    split = load_dataset(DatasetSpec(name="cifar10", root=str(tmp_path), download=False))
    assert split.in_shape == (3, 32, 32)
    assert (len(split.train), len(split.test)) == (20, 4)
    x, y = split.test.batch(torch.arange(4))
    data, labels = written["test_batch"]
    torch.testing.assert_close(x * 255, torch.from_numpy(data.reshape(4, 3, 32, 32)).float())
    assert y.tolist() == labels


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_error_names_files_and_folder(tmp_path, name):
    root = tmp_path / "nowhere"
    spec = DatasetSpec(name=name, root=str(root), download=False)
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(spec)
    message = str(info.value)
    assert "dataset.root" in message and str(root) in message
    for missing in missing_files(spec):
        assert missing in message
    assert missing_files(spec)


def test_partial_files_list_only_what_is_missing(tmp_path):
    _write_mnist_like(tmp_path)
    os.remove(tmp_path / (IDX_NAMES[3] + ".gz"))
    spec = DatasetSpec(name="mnist", root=str(tmp_path), download=False)
    assert missing_files(spec) == [IDX_NAMES[3]]


def test_digits_split_is_seeded_stratified_and_scaled():
    a = load_dataset(DatasetSpec(name="digits", seed=0))
    b = load_dataset(DatasetSpec(name="digits", seed=0))
    c = load_dataset(DatasetSpec(name="digits", seed=1))
    assert a.in_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train) + len(a.test) == 1797
    assert len(a.test) == pytest.approx(0.25 * 1797, abs=1)
    assert torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.test.labels, c.test.labels)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert int(counts.min()) >= 40  # stratified: every class ~45 of 450
    x, _ = a.train.batch(torch.arange(len(a.train)))
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0


def test_subsets_and_batches():
    split = load_dataset(DatasetSpec(name="digits", max_train=100, max_test=30))
    assert (len(split.train), len(split.test)) == (100, 30)
    sizes = [len(y) for _, y in batches(split.train, 32)]
    assert sizes == [32, 32, 32, 4]
    gen = torch.Generator().manual_seed(0)
    seen = torch.cat([y for _, y in batches(split.train, 32, shuffle=True, generator=gen)])
    assert sorted(seen.tolist()) == sorted(split.train.labels.tolist())
    assert len(list(batches(split.train, 32, limit=2))) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "imagenet"), ("test_fraction", 1.0), ("max_train", 0), ("max_test", -3)],
)
def test_spec_validation_names_the_field(field, value):
    with pytest.raises(ValueError, match=f"dataset.{field}"):
        DatasetSpec(**{field: value})


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files_with_a_dot_before_idx_are_found(tmp_path, gz):
    arrays = _write_mnist_like(tmp_path, gz=gz)
    for name in IDX_NAMES:
        ext = ".gz" if gz else ""
        os.rename(tmp_path / (name + ext), tmp_path / (name.replace("-idx", ".idx") + ext))
    spec = DatasetSpec(name="mnist", root=str(tmp_path), download=False)
    assert missing_files(spec) == []
    split = load_dataset(spec)
    assert split.train.labels.tolist() == arrays[IDX_NAMES[1]].tolist()


def test_the_missing_files_error_names_near_matches(tmp_path):
    _write_mnist_like(tmp_path, gz=False)
    os.rename(tmp_path / IDX_NAMES[0], tmp_path / "train_images_idx3.ubyte")
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(DatasetSpec(name="mnist", root=str(tmp_path), download=False))
    message = str(info.value)
    assert IDX_NAMES[0] in message and "train_images_idx3.ubyte" in message
    assert IDX_NAMES[1] + "," not in message.split("Found")[-1]
