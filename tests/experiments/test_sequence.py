"""Sequence models (transformer, LSTM) and the text dataset of the experiments."""

from __future__ import annotations

import json
import math

import pytest
import torch
from exp_helpers import compose_config, tiny

import aimc
from experiments.config import build
from experiments.datasets import DatasetNotFoundError, DatasetSpec, load_dataset
from experiments.models import LSTMClassifier, TransformerClassifier
from experiments.pipeline import reports_perplexity, run, scores
from experiments.text import VOCAB, SequenceDataset, encode


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
    tmp_path.mkdir(parents=True, exist_ok=True)
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


def test_scores_give_accuracy_and_mean_cross_entropy():
    class Uniform(torch.nn.Module):  # equal logits over 7 classes: perplexity 7
        def forward(self, x):
            return torch.zeros(len(x), 7)

    data = SequenceDataset(torch.zeros(10, 3, dtype=torch.long), torch.zeros(10))
    acc, nll = scores(Uniform(), data, batch_size=4)
    assert acc == 1.0  # argmax of equal logits is class 0, every label
    assert math.exp(nll) == pytest.approx(7.0)
    assert reports_perplexity(data)


def test_char_lm_run_reports_perplexity_over_drift_time(tmp_path):
    texts = _corpus(tmp_path / "corpus", n_files=8)
    extra = [
        "dataset=text",
        "model=lstm",
        f"dataset.text_dir={tmp_path / 'corpus'}",
        "dataset.text_glob=*.txt",
        "dataset.seq_len=6",
        "model.hidden=16",
        "model.embed=8",
        "train.epochs=1",
    ]
    exp = build(compose_config([*tiny(tmp_path), *extra]), choices={}, overrides=extra)
    results = run(exp, str(tmp_path / "run"))
    assert len(texts) == 8
    model = LSTMClassifier((6,), len(VOCAB) + 1, hidden=16, embed=8)
    model.load_state_dict(torch.load(tmp_path / "run" / "model.pt", weights_only=True))
    _, nll = scores(model, load_dataset(exp.dataset).test)
    assert results["digital_perplexity"] == pytest.approx(math.exp(nll))
    for row in results["analog"]:
        assert len(row["perplexities"]) == row["repeats"] == 2
        assert all(p >= 1.0 for p in row["perplexities"])
        assert row["perplexity_mean"] == pytest.approx(sum(row["perplexities"]) / 2)
    with open(tmp_path / "run" / "results.json") as f:
        assert (
            json.load(f)["analog"][0]["perplexity_mean"] == results["analog"][0]["perplexity_mean"]
        )
