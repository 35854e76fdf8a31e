"""One experiment, end to end, testable without Hydra: :func:`run` takes a built
:class:`~experiments.config.Experiment` and an output folder.

load dataset → build model → train digitally (or load ``train.checkpoint``, or reuse the cached
model of an identical dataset/model/train/seed config) → optionally fine-tune hardware-aware →
convert → calibrate → for each device draw ``k``: program (seed ``eval.seed + k``), read at every
``eval.times`` → cost report → ``results.json``, ``model.pt``, ``cost.txt``, TensorBoard events.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import itertools
import json
import logging
import math
import os
import random
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

import aimc
from aimc.logging import TBLogger, time_tag
from experiments import plots
from experiments.config import ConfigError, Experiment
from experiments.datasets import (
    DATASET_SHAPES,
    DataSplit,
    ImageDataset,
    batches,
    load_dataset,
)
from experiments.models import build_model
from experiments.text import SequenceDataset

__all__ = [
    "run",
    "seed_everything",
    "accuracy",
    "scores",
    "train",
    "evaluate_analog",
    "cost_summary",
    "cost_only",
    "objectives",
    "write_json_atomic",
    "finished_results",
]

log = logging.getLogger(__name__)

RESULTS = "results.json"
CHECKPOINT = "model.pt"
# what a run writes into its folder (besides Hydra's .hydra/ and log): removed when a killed
# run's folder is run again, so that the two runs' files never mix
RUN_OUTPUTS = (RESULTS, CHECKPOINT, "model_finetuned.pt", "cost.txt", "cost.json", "tensorboard")


class _NoLogger:
    """Stands in for ``TBLogger`` when TensorBoard is off: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch once per run (the library itself never seeds globally)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _tmp_path(path: str) -> str:
    return f"{path}.{os.getpid()}.tmp"


def write_json_atomic(path: str, payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file and ``os.replace``, so that
    readers (``experiments.report`` on a running sweep) never see a partial file."""
    tmp = _tmp_path(path)
    try:
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _save_atomic(obj: Any, path: str) -> None:
    tmp = _tmp_path(path)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """An exclusive lock on ``path`` (parallel sweep jobs wait instead of training twice)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, atomic writes still keep the cache consistent
        yield
        return
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load_state_dict(path: str, what: Optional[str] = None) -> dict[str, torch.Tensor]:
    """The state_dict in ``path``; errors name ``what`` (default ``train.checkpoint=<path>``)."""
    what = what or f"train.checkpoint={path!r}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated, corrupt or non-torch file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"{what}: not a readable torch state_dict "
            f"(torch.load(weights_only=True) failed: {first})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{what} holds a {type(state).__name__}, not a state_dict of tensors")
    return state


def _load_cached(base: str, model: nn.Module) -> Optional[list[dict[str, float]]]:
    """Load the cached digital model ``base``.pt/.json into ``model``; its training history, or
    ``None`` when the cache is unusable (unreadable, truncated, or not this model's layout): the
    files are then named in a warning and removed, and the caller retrains."""
    pt, meta = base + ".pt", base + ".json"
    try:
        with open(meta) as f:
            history = json.load(f)["history"]
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise ValueError("'history' is not a list of epochs")
        for row in history:
            for key in ("epoch", "loss", "accuracy", "test_accuracy"):
                if not isinstance(row.get(key), (int, float)):
                    raise ValueError(f"an epoch lacks the number {key!r}")
        state = _load_state_dict(pt, what=f"cached digital model {pt}")
        model.load_state_dict(state)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        detail = " ".join(str(err).split())[:300]
        log.warning(
            "the cached digital model %s(.pt/.json) is unusable (%s: %s); removing it and "
            "training again",
            base,
            type(err).__name__,
            detail,
        )
        for path in (pt, meta):
            with contextlib.suppress(OSError):
                os.unlink(path)
        return None
    return history


@contextlib.contextmanager
def _run_folder_lock(output_dir: str) -> Iterator[None]:
    """Hold an exclusive lock on the folder ``output_dir`` for the run; a second live run into
    it is refused (the lock goes with the process, killed or not; no file is left behind)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    fd = os.open(output_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                f"run folder {output_dir}: another run is writing into it; give this run its "
                "own folder (hydra.run.dir=...)"
            ) from None
        yield
    finally:
        os.close(fd)


def _comparable(config: Any) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def finished_results(exp: Experiment, output_dir: str) -> Optional[dict[str, Any]]:
    """The results of this very run if ``output_dir`` already holds them (a relaunched sweep's
    finished job: it is skipped), else ``None`` after clearing what an unfinished (killed) run
    left there.

    Raises:
        ConfigError: ``output_dir`` holds the finished results of a different run.
    """
    path = os.path.join(output_dir, RESULTS)
    previous = None
    if os.path.isfile(path):
        try:
            with open(path) as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None  # unreadable: treated as an unfinished run's leftover
    if isinstance(previous, dict) and isinstance(previous.get("config"), dict):
        if _comparable(previous["config"]) == _comparable(exp.config):
            return previous
        old, new = previous["config"], json.loads(_comparable(exp.config))
        differ = sorted(
            k for k in set(old) | set(new) if _comparable(old.get(k)) != _comparable(new.get(k))
        )
        raise ConfigError(
            f"run folder {output_dir} holds the finished results of a different run (config "
            f"differs in {', '.join(differ)}); give this run its own folder "
            "(hydra.run.dir=...) or delete that one"
        )
    leftovers = [n for n in RUN_OUTPUTS if os.path.exists(os.path.join(output_dir, n))]
    if leftovers:
        log.warning(
            "run folder %s holds the outputs of an unfinished run (%s); removing them so that "
            "the two runs never mix",
            output_dir,
            ", ".join(leftovers),
        )
        for name in leftovers:
            target = os.path.join(output_dir, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
    return None


# --- digital training ----------------------------------------------------------------------------
@torch.no_grad()
def scores(model: nn.Module, data: ImageDataset, batch_size: int = 256) -> tuple[float, float]:
    """Top-1 accuracy and mean cross-entropy (nats per sample) of ``model`` (in eval mode) on
    ``data``; for a language model ``exp`` of the second is the perplexity per token."""
    was_training = model.training
    model.eval()
    correct, nll = 0, 0.0
    for x, y in batches(data, batch_size):
        logits = model(x)
        correct += int((logits.argmax(dim=1) == y).sum())
        nll += float(F.cross_entropy(logits.float(), y, reduction="sum"))
    model.train(was_training)
    n = max(len(data), 1)
    return correct / n, nll / n


def accuracy(model: nn.Module, data: ImageDataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``data``."""
    return scores(model, data, batch_size)[0]


def _perplexity(mean_nll: float) -> float:
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def reports_perplexity(data: Any) -> bool:
    """Whether runs on ``data`` report perplexity: a language model's next-token data."""
    return isinstance(data, SequenceDataset)


def train(
    model: nn.Module,
    data: DataSplit,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    optimizer: str = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    seed: int = 0,
    phase: str = "train",
    tb: Any = None,
) -> list[dict[str, float]]:
    """Train ``model`` with cross-entropy; returns one ``{epoch, loss, accuracy, test_accuracy}``
    per epoch, also logged as ``<phase>/loss``, ``<phase>/accuracy`` and
    ``<phase>/test_accuracy``."""
    tb = tb or _NoLogger()
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    gen = torch.Generator().manual_seed(seed)
    history = []
    bar = tqdm(range(epochs), desc=phase, unit="epoch", disable=None, leave=False)
    for epoch in bar:
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for x, y in batches(data.train, batch_size, shuffle=True, generator=gen):
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = nn.functional.cross_entropy(out, y)
            loss.backward()
            opt.step()
            aimc.clip_weights(model)  # TrainingConfig.clip_sigma of analog layers; else nothing
            total_loss += float(loss.detach()) * len(y)
            correct += int((out.argmax(dim=1) == y).sum())
            seen += len(y)
        sched.step()
        row = {
            "epoch": epoch,
            "loss": total_loss / max(seen, 1),
            "accuracy": correct / max(seen, 1),
            "test_accuracy": accuracy(model, data.test),
        }
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", test_acc=f"{row['test_accuracy']:.3f}")
        _log_epoch(tb, phase, row)
    bar.close()
    return history


def _log_epoch(tb: Any, phase: str, row: dict[str, float]) -> None:
    tb.log_training(row["epoch"], loss=row["loss"], accuracy=row["accuracy"], phase=phase)
    tb.scalar(f"{phase}/test_accuracy", row["test_accuracy"], row["epoch"])


def _digital_model(
    exp: Experiment, data: DataSplit, model: nn.Module, tb: Any
) -> tuple[str, list[dict[str, float]]]:
    """Fill ``model`` with trained weights; returns where they came from and the history."""
    t = exp.train
    if t.checkpoint:
        try:
            model.load_state_dict(_load_state_dict(t.checkpoint))
        except RuntimeError as err:  # keys or shapes of another model
            detail = " ".join(str(err).split())
            raise ConfigError(
                f"train.checkpoint={t.checkpoint!r} does not fit model "
                f"{type(model).__name__}: {detail}"
            ) from None
        log.info("loaded the digital model from train.checkpoint=%s", t.checkpoint)
        return "checkpoint", []
    kwargs = {
        k: getattr(t, k)
        for k in ("epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay")
    }
    if not t.cache:
        return "trained", train(model, data, seed=exp.seed, tb=tb, **kwargs)
    os.makedirs(exp.paths.cache_dir, exist_ok=True)
    base = os.path.join(exp.paths.cache_dir, f"digital-{exp.cache_key}")
    with _file_lock(base + ".lock"):
        if os.path.isfile(base + ".pt") or os.path.isfile(base + ".json"):
            initial = copy.deepcopy(model.state_dict())
            history = _load_cached(base, model)
            if history is not None:
                for row in history:
                    _log_epoch(tb, "train", row)
                log.info("reused the cached digital model %s.pt", base)
                return "cache", history
            model.load_state_dict(initial)  # a partial load must not leak into training
        history = train(model, data, seed=exp.seed, tb=tb, **kwargs)
        _save_atomic(model.state_dict(), base + ".pt")
        write_json_atomic(
            base + ".json",
            {
                "history": history,
                "config": {k: exp.config.get(k) for k in ("dataset", "model", "train", "seed")},
            },
        )
        return "trained", history


# --- analog --------------------------------------------------------------------------------------
def _calibration_batches(exp: Experiment, data: DataSplit) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(exp.seed + 1)
    it = batches(data.train, exp.eval.batch_size, shuffle=True, generator=gen)
    return [x for x, _ in itertools.islice(it, exp.eval.calibration_batches)]


def _check_layer_names(exp: Experiment, model: nn.Module) -> None:
    """Each ``analog.digital`` / ``analog.layers`` name must match a layer conversion replaces."""
    mapping = aimc.get_default_analog_module_mapping()
    names = [
        n for n, m in model.named_modules() if n and any(c in mapping for c in type(m).__mro__)
    ]
    for key, patterns in (
        ("analog.digital", exp.digital_layers),
        ("analog.layers", exp.layer_configs),
    ):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                raise ConfigError(
                    f"{key}: {pattern!r} matches no layer of {type(model).__name__}; "
                    f"its layers: {', '.join(names)}"
                )
    if names and all(any(fnmatch.fnmatchcase(n, p) for p in exp.digital_layers) for n in names):
        raise ConfigError(
            f"analog.digital={exp.digital_layers}: every layer of {type(model).__name__} is "
            "digital, nothing to run on analog hardware; keep at least one layer analog"
        )


def _convert(
    exp: Experiment,
    model: nn.Module,
    training: Optional[aimc.TrainingConfig] = None,
    program: bool = True,
):
    """``convert_to_analog`` with the per-layer configs and digital layers of ``exp``."""
    base, layers = exp.analog, exp.layer_configs
    if training is not None:
        base = dataclasses.replace(base, training=training)
        layers = {k: dataclasses.replace(v, training=training) for k, v in layers.items()}
    return aimc.convert_to_analog(
        model, base, layer_configs=layers, exclude=exp.digital_layers, program=program
    )


def _analog_model(
    exp: Experiment, data: DataSplit, model: nn.Module, tb: Any
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Convert (fine-tuning hardware-aware first when ``train.hardware_aware``) and calibrate."""
    calib = _calibration_batches(exp, data)
    if not exp.train.hardware_aware or exp.train.finetune_epochs == 0:
        analog = _convert(exp, model)
        aimc.calibrate(analog, calib)
        return analog.eval(), []
    analog = _convert(exp, model, exp.train.training_config())
    aimc.calibrate(analog, calib)
    history = train(
        analog,
        data,
        epochs=exp.train.finetune_epochs,
        lr=exp.train.finetune_lr,
        batch_size=exp.train.batch_size,
        optimizer=exp.train.optimizer,
        momentum=exp.train.momentum,
        weight_decay=exp.train.weight_decay,
        seed=exp.seed + 2,
        phase="finetune",
        tb=tb,
    )
    aimc.calibrate(analog, calib)  # the weights moved: ranges follow, as a chip recalibrates
    return analog.eval(), history


def evaluate_analog(
    analog: nn.Module,
    test: ImageDataset,
    times_s: list[float],
    repeats: int,
    *,
    seed: int = 0,
    batch_size: int = 256,
    on_draw: Any = None,
    on_saturation: Any = None,
) -> list[dict[str, Any]]:
    """Accuracy at each time after programming over ``repeats`` device draws.

    Draw ``k`` programs every analog layer with seed ``seed + k`` and reads it at each time in
    turn. ``on_draw(k, analog)`` is called after each programming; ``on_saturation(t, rates)``
    gets each layer's ADC saturation rate at each time of the first draw. Returns one
    ``{"t_s", "accuracy_mean", "accuracy_std", "repeats", "accuracies"}`` per time (std: the
    sample standard deviation over draws, 0 with one draw); on a language model's data (see
    :func:`reports_perplexity`) also ``"perplexity_mean"``, ``"perplexity_std"`` and
    ``"perplexities"``: per draw ``exp`` of the mean cross-entropy per token.
    """
    acc = np.zeros((repeats, len(times_s)))
    nll = np.zeros((repeats, len(times_s)))
    bar = tqdm(
        total=repeats * len(times_s), desc="analog eval", unit="read", disable=None, leave=False
    )
    for k in range(repeats):
        aimc.program(analog, seed=seed + k)
        if on_draw is not None:
            on_draw(k, analog)
        for j, t in enumerate(times_s):
            aimc.drift(analog, t=t)
            if k == 0 and on_saturation is not None:
                with aimc.track_adc_saturation(analog) as rates:
                    acc[k, j], nll[k, j] = scores(analog, test, batch_size)
                on_saturation(t, rates)
            else:
                acc[k, j], nll[k, j] = scores(analog, test, batch_size)
            bar.update()
    bar.close()
    rows = []
    for j, t in enumerate(times_s):
        values = [float(v) for v in acc[:, j]]
        rows.append(
            {
                "t_s": float(t),
                "accuracy_mean": statistics.fmean(values),
                "accuracy_std": statistics.stdev(values) if repeats > 1 else 0.0,
                "repeats": repeats,
                "accuracies": values,
            }
        )
        if reports_perplexity(test):
            ppl = [_perplexity(float(v)) for v in nll[:, j]]
            rows[-1].update(
                perplexity_mean=statistics.fmean(ppl),
                perplexity_std=statistics.stdev(ppl) if repeats > 1 else 0.0,
                perplexities=ppl,
            )
    return rows


def _log_device_state(tb: Any, analog: nn.Module, times_s: list[float]) -> None:
    """Conductance histograms at each time (step: t in s) and drift exponents, per layer."""
    for name, layer in aimc.analog_layers(analog):
        state = layer.device_state()
        device = layer.config.device
        for t in [0.0, *times_s]:
            g = state["g"] if t == 0 else device.conductance(state, t)
            tb.histogram(f"conductance_us/{name}", g, step=int(round(t)))
        nu = state.get("nu")
        if nu is not None:
            tb.histogram(f"drift_exponent/{name}", nu)


# --- cost ----------------------------------------------------------------------------------------
def cost_summary(
    model: nn.Module, example: torch.Tensor, technology: Any, replication: Any = "none"
) -> tuple[dict[str, Any], Any]:
    """Totals, per-layer and per-component energy of one inference of ``example`` (a batch of 1),
    and the report itself."""
    report = aimc.estimate_cost(model, example, technology=technology, replication=replication)
    total = report.total
    summary: dict[str, Any] = {
        "energy_j": float(total.energy_j),
        "latency_s": float(total.latency_s),
        "area_mm2": float(total.area_mm2),
        "tops_per_w": float(total.tops_per_w),
        "digital_baseline_energy_j": float(report.digital_baseline.energy_j),
        "technology": report.technology.name,
    }
    summary["layers_energy_j"] = {str(layer.name): float(layer.energy_j) for layer in report.layers}
    summary["components_energy_j"] = {
        str(k): float(v) for k, v in total.energy_by_component_j.items() if v > 0
    }
    return summary, report


_COST_KEYS = ("energy_j", "latency_s", "area_mm2", "tops_per_w")


def objectives(exp: Experiment, rows: list[dict[str, Any]], cost: Optional[dict[str, Any]]):
    """What a search optimizes: the accuracy (mean and std over device draws) at
    ``eval.objective_time`` and the cost totals of one inference."""
    out: dict[str, Any] = {"t_s": exp.eval.objective_time}
    for row in rows:
        if math.isclose(row["t_s"], exp.eval.objective_time, rel_tol=1e-12, abs_tol=1e-12):
            out.update(accuracy=row["accuracy_mean"], accuracy_std=row["accuracy_std"])
            out["repeats"] = row["repeats"]
    for key in _COST_KEYS:
        out[key] = (cost or {}).get(key)
    return out


def cost_report(exp: Experiment) -> tuple[Optional[dict[str, Any]], Any]:
    """The cost summary and report of ``exp``'s hardware, without data, training or device
    programming.

    The model gets its seeded initial weights and the input a seeded uniform image of the
    dataset's shape, so the data-dependent terms (crossbar read energy, which is small) are
    estimates; the architecture-dependent ones (ADC and DAC conversions, tiles, area, latency)
    are the same as a full run's.
    """
    if exp.dataset.name not in DATASET_SHAPES:
        raise ConfigError(f"dataset.name={exp.dataset.name!r}: no known shape for a cost-only run")
    in_shape, classes = DATASET_SHAPES[exp.dataset.name]
    with torch.random.fork_rng():
        torch.manual_seed(exp.seed)
        model = build_model(exp.model_factory, in_shape, classes, **exp.model_kwargs)
        example = torch.rand(1, *in_shape)
    _check_layer_names(exp, model)
    analog = _convert(exp, model, program=False).eval()
    return cost_summary(analog, example, exp.technology, exp.eval.replication)


def cost_only(exp: Experiment) -> dict[str, Any]:
    """The cost totals of ``exp``'s hardware (:func:`cost_report`): ``{"energy_j",
    "latency_s", "area_mm2", "tops_per_w"}`` (``None`` values without a cost model)."""
    summary, _ = cost_report(exp)
    return {k: (summary or {}).get(k) for k in _COST_KEYS}


# --- the run -------------------------------------------------------------------------------------
def _hparams(exp: Experiment) -> dict[str, Any]:
    hp: dict[str, Any] = dict(exp.choices)
    cfg = exp.config

    def flat(prefix: str, node: Any) -> None:
        for key, value in node.items():
            if key.startswith("_"):
                continue
            if isinstance(value, dict):
                flat(f"{prefix}{key}.", value)
            elif not isinstance(value, list):
                hp[f"{prefix}{key}"] = value

    for group in ("tile", "dac", "adc", "mapping", "analog"):
        flat(f"{group}.", cfg.get(group, {}))
    for key in ("epochs", "hardware_aware"):
        hp[f"train.{key}"] = cfg["train"].get(key)
    hp["eval.repeats"] = cfg["eval"].get("repeats")
    hp["seed"] = cfg.get("seed")
    return hp


def _logger(exp: Experiment, output_dir: str) -> Any:
    if not exp.logger.tensorboard:
        return _NoLogger()
    return TBLogger(os.path.join(output_dir, "tensorboard"), flush_secs=exp.logger.flush_secs)


def run(
    exp: Experiment, output_dir: str, on_claimed: Optional[Callable[[], None]] = None
) -> dict[str, Any]:
    """Run the experiment ``exp``, writing its outputs to ``output_dir``; returns the results.

    A folder that already holds this run's results (a relaunched sweep) is not run again: the
    stored results are returned. A folder holding another run's results is refused, one that a
    killed run left is cleared first, and one that another live run is writing into is refused.
    ``on_claimed`` is called once the folder is this run's (not when skipped or refused): the
    place to write records that must not overwrite another run's, such as Hydra's config.
    """
    os.makedirs(output_dir, exist_ok=True)
    with _run_folder_lock(output_dir):
        previous = finished_results(exp, output_dir)
        if previous is not None:
            log.info("%s already holds the results of this run: skipped", output_dir)
            return previous
        if on_claimed is not None:
            on_claimed()
        return _run(exp, output_dir)


def _run(exp: Experiment, output_dir: str) -> dict[str, Any]:
    start = time.perf_counter()
    if exp.threads is not None:
        torch.set_num_threads(exp.threads)
    seed_everything(exp.seed)
    data = load_dataset(exp.dataset)
    model = build_model(exp.model_factory, data.in_shape, data.num_classes, **exp.model_kwargs)
    log.info(
        "%s: %d train / %d test images of %s; %s with %d parameters",
        data.name,
        len(data.train),
        len(data.test),
        data.in_shape,
        type(model).__name__,
        sum(p.numel() for p in model.parameters()),
    )
    _check_layer_names(exp, model)
    tb = _logger(exp, output_dir)
    try:
        source, history = _digital_model(exp, data, model, tb)
        _save_atomic(model.state_dict(), os.path.join(output_dir, CHECKPOINT))
        digital_acc, digital_nll = scores(model, data.test)
        t_train = time.perf_counter() - start
        log.info("digital test accuracy %.4f (%s)", digital_acc, source)
        digital_ppl = None
        if reports_perplexity(data.test):
            digital_ppl = _perplexity(digital_nll)
            log.info("digital test perplexity %.3f per token", digital_ppl)

        analog, finetune = _analog_model(exp, data, model, tb)
        if finetune:
            _save_atomic(analog.state_dict(), os.path.join(output_dir, "model_finetuned.pt"))
        log.info("analog model:\n%s", aimc.conversion_report(analog))
        test = data.test.subset(exp.eval.max_samples, exp.seed + 3)

        def on_saturation(t: float, rates: dict[str, float]) -> None:
            for name, rate in rates.items():
                tb.scalar(f"adc/saturation_rate/{name}", rate, int(t))

        def on_draw(k: int, net: nn.Module) -> None:
            if k == 0 and exp.logger.histograms:
                _log_device_state(tb, net, exp.eval.times)

        rows = evaluate_analog(
            analog,
            test,
            exp.eval.times,
            exp.eval.repeats,
            seed=exp.eval.seed,
            batch_size=exp.eval.batch_size,
            on_draw=on_draw,
            on_saturation=on_saturation,
        )
        for row in rows:
            log.info(
                "t=%s: analog accuracy %.4f ± %.4f over %d draws",
                time_tag(row["t_s"]),
                row["accuracy_mean"],
                row["accuracy_std"],
                row["repeats"],
            )
            if "perplexity_mean" in row:
                log.info(
                    "t=%s: analog perplexity %.3f ± %.3f per token",
                    time_tag(row["t_s"]),
                    row["perplexity_mean"],
                    row["perplexity_std"],
                )
        t_eval = time.perf_counter() - start - t_train

        cost, report = cost_summary(
            analog, data.test.batch(torch.arange(1))[0], exp.technology, exp.eval.replication
        )
        if report is not None:
            table = report.table()
            with open(os.path.join(output_dir, "cost.txt"), "w") as f:
                f.write(table + "\n")
            write_json_atomic(os.path.join(output_dir, "cost.json"), report.to_dict())
            log.info("cost (technology %s):\n%s", exp.technology, table)

        results = {
            "config": exp.config,
            "choices": exp.choices,
            "overrides": exp.overrides,
            "digital_accuracy": digital_acc,
            "digital_perplexity": digital_ppl,
            "digital_source": source,
            "cache_key": exp.cache_key,
            # which normal sampler drew the per-forward noise: a seed's numbers depend on it
            "normal_sampler": aimc.sampling.normal_sampler(),
            "analog": rows,
            "cost": cost,
            "objective": {**objectives(exp, rows, cost), "test_images": len(test)},
            "train_history": history,
            "finetune_history": finetune,
            "timing_s": {
                "digital": t_train,
                "analog_eval": t_eval,
                "total": time.perf_counter() - start,
            },
        }
        write_json_atomic(os.path.join(output_dir, RESULTS), results)
        _log_results(tb, exp, results)
    finally:
        tb.close()
    return results


def _log_results(tb: Any, exp: Experiment, results: dict[str, Any]) -> None:
    rows = results["analog"]
    times = [r["t_s"] for r in rows]
    mean = [r["accuracy_mean"] for r in rows]
    std = [r["accuracy_std"] for r in rows]
    tb.log_accuracy(times, mean, std, digital=results["digital_accuracy"])
    cost = results["cost"] or {}
    if cost:
        tb.log_energy(
            cost["energy_j"],
            layers_j=cost["layers_energy_j"],
            components_j=cost["components_energy_j"],
            digital_baseline_j=cost["digital_baseline_energy_j"],
        )
        tb.log_cost(
            latency_s=cost["latency_s"], area_mm2=cost["area_mm2"], tops_per_w=cost["tops_per_w"]
        )
    metrics = {"hparam/digital_accuracy": results["digital_accuracy"]}
    for r in rows:
        metrics[f"hparam/accuracy_t={time_tag(r['t_s'])}"] = r["accuracy_mean"]
        if "perplexity_mean" in r:
            metrics[f"hparam/perplexity_t={time_tag(r['t_s'])}"] = r["perplexity_mean"]
            tb.scalar("analog/perplexity", r["perplexity_mean"], int(r["t_s"]))
    if cost.get("energy_j") is not None and math.isfinite(cost["energy_j"]):
        metrics["hparam/energy_pj"] = cost["energy_j"] * 1e12
    tb.log_hparams(_hparams(exp), metrics)
    if exp.logger.figures:
        title = " ".join(
            f"{k}={v}" for k, v in exp.choices.items() if k in ("dataset", "model", "device")
        )
        tb.figure(
            "figures/accuracy_vs_time",
            plots.accuracy_vs_time(
                times, mean, std, digital=results["digital_accuracy"], title=title
            ),
        )
        if cost:
            tb.figure(
                "figures/energy_breakdown",
                plots.energy_breakdown(cost["components_energy_j"], cost["layers_energy_j"]),
            )
    tb.text("config", "```\n" + json.dumps(copy.deepcopy(exp.config), indent=2) + "\n```")
