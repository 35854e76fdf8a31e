"""Sequence models (transformer, LSTM) and the text dataset of the experiments."""

from __future__ import annotations

import pytest
import torch

import aimc
from experiments.datasets import DatasetNotFoundError, DatasetSpec, load_dataset
from experiments.models import LSTMClassifier, TransformerClassifier
from experiments.text import VOCAB, encode


@pytest.mark.parametrize("cls", [TransformerClassifier, LSTMClassifier], ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "shape,patch", [((1, 8, 8), 0), ((1, 8, 8), 4), ((3, 8, 12), 4), ((16,), 0)], ids=str
)
def test_sequence_models_train_and_convert_exactly_when_ideal(cls, shape, patch):
    torch.manual_seed(0)
    kw = {"patch": patch} if len(shape) == 3 else {}
    model = cls(shape, 11, **kw)
    x = torch.randint(0, 11, (4, *shape)) if len(shape) == 1 else torch.rand(4, *shape)
    out = model(x)
    assert out.shape == (4, 11)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    analog = aimc.convert_to_analog(model, aimc.AnalogConfig.ideal())
    kinds = {type(m).__name__ for _, m in analog.named_modules()}
    assert kinds & {"AnalogMultiheadAttention", "AnalogLSTM"}
    with torch.no_grad():
        torch.testing.assert_close(analog(x), model(x), rtol=1e-4, atol=1e-5)


def test_patch_must_divide_the_image():
    with pytest.raises(ValueError, match="patch=3 must divide the image size 8x8"):
        TransformerClassifier((1, 8, 8), 10, patch=3)


def _corpus(tmp_path, n_files=4):
    texts = [f"file {k}: " + "abcdefgh" * (5 + k) + "\n" for k in range(n_files)]
    for k, text in enumerate(texts):
        (tmp_path / f"f{k}.txt").write_text(text)
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    return texts


def test_text_windows_predict_the_next_character_and_split_by_file(tmp_path):
    texts = _corpus(tmp_path)
    spec = DatasetSpec(name="text", text_dir=str(tmp_path), text_glob="*.txt", seq_len=5)
    data = load_dataset(spec)
    assert data.in_shape == (5,) and data.num_classes == len(VOCAB) + 1
    train_text = "".join(texts[:3])  # every 4th file (f3) is a test file
    ids = torch.from_numpy(encode(train_text))
    n = (len(ids) - 1) // 5
    assert len(data.train) == n and len(data.test) == (len(texts[3]) - 1) // 5
    torch.testing.assert_close(data.train.tokens[1], ids[5:10])
    assert int(data.train.labels[1]) == int(ids[10])
    assert VOCAB[int(ids[0]) - 1] == "f" and int(encode("é")[0]) == 0


def test_the_default_corpus_is_the_standard_library():
    data = load_dataset(DatasetSpec(name="text", max_chars=100_000, max_train=50, max_test=10))
    assert len(data.train) == 50 and len(data.test) == 10
    assert data.train.tokens.dtype == torch.long and int(data.train.tokens.max()) <= len(VOCAB)


def test_missing_folder_and_no_matching_file_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dataset.text_dir=.*is not a folder"):
        load_dataset(DatasetSpec(name="text", text_dir=str(tmp_path / "nope")))
    _corpus(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="no file matches dataset.text_glob='\\*.md'"):
        load_dataset(DatasetSpec(name="text", text_dir=str(tmp_path), text_glob="*.md"))
    with pytest.raises(DatasetNotFoundError, match="raise dataset.max_chars"):
        spec = DatasetSpec(name="text", text_dir=str(tmp_path), text_glob="*.txt", max_chars=8)
        load_dataset(spec)
    with pytest.raises(ValueError, match="dataset.seq_len must be an int >= 1"):
        DatasetSpec(name="text", seq_len=0)
