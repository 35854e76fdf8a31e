"""Design-space exploration: an Optuna search that drives the Hydra experiment.

``python -m experiments.run -m hydra/sweeper=dse`` hands the sweep to :class:`DSESweeper` (the
Hydra plugin ``hydra_plugins.aimc_dse`` registers it). Each trial is one ordinary run of the
experiment, launched by whatever Hydra launcher is configured (in-process, joblib, SLURM through
submitit, Ray through ``hydra/launcher=aimc_ray``), with the overrides Optuna picked:

1. Optuna asks for a batch of ``n_jobs`` trials from the search space (``params`` and the sweep
   overrides of the command line, in Hydra's syntax: ``choice(4,6,8)``, ``range(64,257,64)``,
   ``interval(0.5,1.0)``, ``tag(log,interval(...))``).
2. Pre-evaluation: the cost of each trial's hardware is estimated without data
   (:func:`experiments.pipeline.cost_only`), so a trial that breaks a ``constraints`` bound, or
   whose config cannot run, is settled without being launched; a search whose objectives are
   all costs never launches a job.
3. The trials run at the low fidelity (``fidelity.low``: few device draws and test images, the
   objective drift time only); their objectives (``results.json`` ``objective``) go back to
   Optuna.
4. When the budget is spent, the trials on the Pareto front are run again at the high fidelity
   (``fidelity.high``) and their results kept beside the low ones (two-rung successive
   halving: only candidates pay for precise numbers).

Trials live in Optuna's storage (default: SQLite ``optuna.db`` in the sweep folder): running
the same command with the same ``hydra.sweep.dir`` resumes the search, re-running the trials an
interruption left unfinished. At the end :func:`experiments.report.make_report` writes the
report of the search.

We keep our own small sweeper rather than ``hydra-optuna-sweeper``: that plugin's last release
pins ``optuna<3``, whose SQLite storage fails under SQLAlchemy 2, so a resumable search would
need an old SQLAlchemy pinned for the whole environment; a current Optuna behind Hydra's
``Sweeper`` interface (this module) keeps both current.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    RangeSweep,
)
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "SearchSpace",
    "DSESweeper",
    "parse_search_space",
    "format_value",
    "make_sampler",
    "objective_values",
]

log = logging.getLogger(__name__)

# result key -> its default direction
OBJECTIVES = {
    "accuracy": "maximize",
    "energy_j": "minimize",
    "latency_s": "minimize",
    "area_mm2": "minimize",
    "tops_per_w": "maximize",
}
SAMPLERS = ("nsga2", "nsga3", "tpe", "random")
STORAGE_FILE = "optuna.db"
# the overrides of a high-fidelity rerun
FULL_SUFFIX = "_full"


class SearchError(ValueError):
    """A search setting that cannot run; the message names the ``hydra.sweeper`` key."""


def format_value(value: Any) -> str:
    """A Python value as a Hydra override value (``[fc1,fc2]``, ``null``, ``true``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _key(override: Override) -> str:
    key = override.get_key_element()
    return key.lstrip("+~")


def _override_key(key: str) -> str:
    """Per-layer keys do not exist in the composed config until set: force-add them."""
    return f"++{key}" if key.startswith("analog.layers.") else key


@dataclass
class SearchSpace:
    """Optuna distributions by override key, and the fixed overrides of every trial."""

    distributions: dict[str, Any] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The Hydra overrides of one trial's parameter values."""
        out = list(self.fixed)
        for key, value in params.items():
            out.append(f"{_override_key(key)}={format_value(value)}")
        return out


def _distribution(key: str, sweep: Any) -> Any:
    import optuna.distributions as od

    if isinstance(sweep, ChoiceSweep):
        values = [format_value(v) if isinstance(v, (list, dict)) else v for v in sweep.list]
        if not values:
            raise SearchError(f"hydra.sweeper.params.{key}: an empty choice()")
        return od.CategoricalDistribution(values)
    if isinstance(sweep, RangeSweep):
        values = list(sweep.range()) if hasattr(sweep, "range") else None
        start, stop, step = sweep.start, sweep.stop, sweep.step
        if all(isinstance(v, int) for v in (start, stop, step)):
            if stop <= start or step <= 0:
                raise SearchError(f"hydra.sweeper.params.{key}: empty range({start},{stop},{step})")
            last = start + ((stop - 1 - start) // step) * step
            return od.IntDistribution(int(start), int(last), step=int(step))
        values = values or []
        return od.CategoricalDistribution(values)
    if isinstance(sweep, IntervalSweep):
        log_scale = "log" in sweep.tags
        lo, hi = sweep.start, sweep.end
        if lo is None or hi is None or hi <= lo:
            raise SearchError(f"hydra.sweeper.params.{key}: interval needs start < end")
        if isinstance(lo, int) and isinstance(hi, int):
            return od.IntDistribution(lo, hi, log=log_scale)
        return od.FloatDistribution(float(lo), float(hi), log=log_scale)
    raise SearchError(
        f"hydra.sweeper.params.{key}: {type(sweep).__name__} is not searchable; use choice(), "
        "range() or interval()"
    )


def parse_search_space(params: Mapping[str, Any], arguments: Sequence[str]) -> SearchSpace:
    """The search space from ``hydra.sweeper.params`` (``key: choice(...)``) and the command
    line (a sweep such as ``adc.bits=choice(4,6,8)`` or ``adc.bits=4,6,8`` is searched, a plain
    override is fixed for every trial; the command line wins over ``params``)."""
    parser = OverridesParser.create()
    space = SearchSpace()
    items = [f"{k}={v}" for k, v in (params or {}).items()]
    for text in [*items, *arguments]:
        try:
            (override,) = parser.parse_overrides([text])
        except Exception as err:
            raise SearchError(f"cannot parse the search parameter {text!r}: {err}") from None
        key = _key(override)
        if override.is_sweep_override():
            space.fixed = [f for f in space.fixed if f.split("=", 1)[0].lstrip("+~") != key]
            space.distributions[key] = _distribution(key, override.value())
        else:
            space.distributions.pop(key, None)
            space.fixed = [f for f in space.fixed if f.split("=", 1)[0].lstrip("+~") != key]
            space.fixed.append(text)
    return space


def make_sampler(
    name: str,
    seed: Optional[int],
    options: Optional[Mapping[str, Any]] = None,
    population_size: Optional[int] = None,
):
    """An Optuna sampler by name (``nsga2``, ``nsga3``, ``tpe``, ``random``), seeded;
    ``population_size`` applies to the genetic ones, ``options`` are keyword arguments."""
    import optuna

    options = dict(options or {})
    if population_size is not None and name in ("nsga2", "nsga3"):
        options.setdefault("population_size", int(population_size))
    classes = {
        "nsga2": optuna.samplers.NSGAIISampler,
        "nsga3": optuna.samplers.NSGAIIISampler,
        "tpe": optuna.samplers.TPESampler,
        "random": optuna.samplers.RandomSampler,
    }
    if name not in classes:
        raise SearchError(f"hydra.sweeper.sampler={name!r}: must be one of {SAMPLERS}")
    try:
        return classes[name](seed=seed, **options)
    except TypeError as err:
        raise SearchError(f"hydra.sweeper.sampler_options: {err}") from None


def objective_values(
    result: Mapping[str, Any], objectives: Mapping[str, str]
) -> Optional[list[float]]:
    """The values of ``objectives`` in a run's ``objective`` block, or ``None`` if one is
    missing or not finite."""
    values = []
    for key in objectives:
        value = result.get(key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        values.append(float(value))
    return values


def _read_results(output_dir: str) -> Optional[dict[str, Any]]:
    path = os.path.join(output_dir, "results.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


class DSESweeper(Sweeper):
    """Hydra sweeper running an Optuna (multi-objective) search over the experiment.

    Args (``conf/hydra/sweeper/dse.yaml``):
        objectives: result keys from :data:`OBJECTIVES`, each in its direction there (or a
            ``{key: maximize|minimize}`` mapping); ``accuracy`` is the accuracy at
            ``eval.objective_time``.
        params: the search space, ``{override key: choice(...)|range(...)|interval(...)}``.
        n_trials: trials of the search in total (a resumed search runs what is left).
        n_jobs: trials launched together (the launcher may run them in parallel).
        sampler: ``nsga2`` | ``nsga3`` | ``tpe`` | ``random``; ``sampler_options``: its
            keyword arguments; ``population_size``: the generation size of the genetic ones.
        seed: the sampler's seed.
        study_name, storage: the Optuna study; storage ``null`` means SQLite in the sweep folder.
        constraints: upper bounds on cost keys (``{energy_j: 2e-8}``; ``None``: no bound),
            checked before launching.
        pre_evaluate: estimate each trial's cost without data before launching it.
        fidelity: ``low`` and ``high`` override lists, ``promote``: how many Pareto trials
            (at most) are re-run at ``high`` at the end (0: none).
        enqueue: trials to run first, each ``{override key: value}``.
        seed_from: a ``sensitivity.json`` (``python -m experiments.sensitivity``) whose
            ``enqueue`` trials (the most sensitive layers digital) run first.
        report: write the search report into the sweep folder at the end.
    """

    def __init__(
        self,
        objectives: Mapping[str, str],
        params: Optional[Mapping[str, Any]] = None,
        n_trials: int = 20,
        n_jobs: int = 1,
        sampler: str = "nsga2",
        sampler_options: Optional[Mapping[str, Any]] = None,
        population_size: Optional[int] = 10,
        seed: Optional[int] = 0,
        study_name: str = "dse",
        storage: Optional[str] = None,
        constraints: Optional[Mapping[str, float]] = None,
        pre_evaluate: bool = True,
        fidelity: Optional[Mapping[str, Any]] = None,
        enqueue: Optional[Sequence[Mapping[str, Any]]] = None,
        seed_from: Optional[str] = None,
        report: bool = True,
    ) -> None:
        if isinstance(objectives, str):
            objectives = [objectives]
        if objectives is not None and not isinstance(objectives, Mapping):
            # a list of keys, each in its natural direction (a list replaces the default whole)
            unknown = [k for k in objectives if k not in OBJECTIVES]
            if unknown:
                raise SearchError(
                    f"hydra.sweeper.objectives: {unknown} unknown; one of {list(OBJECTIVES)}"
                )
            objectives = {k: OBJECTIVES[k] for k in objectives}
        self.objectives = dict(objectives or {})
        for key, direction in self.objectives.items():
            if key not in OBJECTIVES:
                raise SearchError(
                    f"hydra.sweeper.objectives.{key}: unknown objective; one of {list(OBJECTIVES)}"
                )
            if direction not in ("maximize", "minimize"):
                raise SearchError(
                    f"hydra.sweeper.objectives.{key}={direction!r}: maximize or minimize"
                )
        if not self.objectives:
            raise SearchError("hydra.sweeper.objectives: name at least one objective")
        for key, value in (("n_trials", n_trials), ("n_jobs", n_jobs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SearchError(f"hydra.sweeper.{key}={value!r}: must be an int >= 1")
        self.params = dict(params or {})
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_name, self.sampler_options = sampler, dict(sampler_options or {})
        self.population_size = population_size
        make_sampler(sampler, seed, self.sampler_options, population_size)  # fail early
        self.seed, self.study_name, self.storage = seed, study_name, storage
        self.constraints = {k: v for k, v in (constraints or {}).items() if v is not None}
        for key, bound in self.constraints.items():
            if key not in OBJECTIVES or key == "accuracy":
                raise SearchError(
                    f"hydra.sweeper.constraints.{key}: a cost key of {list(OBJECTIVES)[1:]}"
                )
            if not isinstance(bound, (int, float)):
                raise SearchError(f"hydra.sweeper.constraints.{key}={bound!r}: a number")
        self.pre_evaluate = bool(pre_evaluate)
        fidelity = dict(fidelity or {})
        self.low = [str(o) for o in fidelity.get("low") or []]
        self.high = [str(o) for o in fidelity.get("high") or []]
        self.promote = int(fidelity.get("promote", 0) or 0)
        self.enqueue = [dict(e) for e in enqueue or []]
        if seed_from:
            try:
                with open(str(seed_from)) as f:
                    self.enqueue += [dict(e) for e in json.load(f).get("enqueue") or []]
            except (OSError, json.JSONDecodeError, AttributeError) as err:
                raise SearchError(f"hydra.sweeper.seed_from={seed_from!r}: {err}") from None
        self.report = bool(report)
        self.config: Optional[DictConfig] = None
        self.launcher: Any = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    # --- the search ------------------------------------------------------------------------------
    @property
    def needs_runs(self) -> bool:
        """Whether trials must run (an accuracy objective); cost-only searches do not."""
        return "accuracy" in self.objectives

    def _study(self, sweep_dir: str):
        import optuna

        storage = self.storage or f"sqlite:///{os.path.join(sweep_dir, STORAGE_FILE)}"
        directions = list(self.objectives.values())
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            sampler=make_sampler(
                self.sampler_name, self.seed, self.sampler_options, self.population_size
            ),
            directions=directions,
            load_if_exists=True,
        )
        if list(study.directions) != [
            optuna.study.StudyDirection.MAXIMIZE
            if d == "maximize"
            else optuna.study.StudyDirection.MINIMIZE
            for d in directions
        ]:
            raise SearchError(
                f"hydra.sweeper.objectives: the study {self.study_name!r} in {storage} was "
                "started with other objectives; use a new hydra.sweep.dir or study_name"
            )
        study.set_metric_names(list(self.objectives))
        study.set_user_attr("objectives", self.objectives)
        return study

    def _recover(self, study: Any) -> None:
        """Trials an interruption left running are failed and queued again with their params."""
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
            study.set_user_attr(f"interrupted_{trial.number}", True)
            study.enqueue_trial(trial.params, user_attrs={"resumed_from": trial.number})
            log.info("trial %d was interrupted; queued again", trial.number)

    def _done(self, study: Any) -> int:
        from optuna.trial import TrialState

        interrupted = {k for k in study.user_attrs if k.startswith("interrupted_")}
        return sum(
            1
            for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
            and f"interrupted_{t.number}" not in interrupted
        )

    def _pre_evaluate(self, overrides: list[str]) -> tuple[Optional[dict[str, Any]], str]:
        """``(cost, "")``, or ``(None, reason)`` when the trial's config cannot run."""
        from experiments.config import ConfigError, build
        from experiments.pipeline import cost_only

        assert self.hydra_context is not None and self.config is not None
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
            return cost_only(build(cfg)), ""
        except (ConfigError, ValueError, TypeError, KeyError) as err:
            return None, str(err)
        except Exception as err:  # a composition error of Hydra (unknown key or option)
            return None, f"{type(err).__name__}: {err}"

    def _settle_without_run(self, study: Any, trial: Any, cost: Optional[dict], reason: str):
        """Tell a trial that needs no run: failed, pruned by a constraint, or cost-only."""
        from optuna.trial import TrialState

        if cost is None:
            trial.set_user_attr("error", reason)
            study.tell(trial, state=TrialState.FAIL)
            log.warning("trial %d cannot run: %s", trial.number, reason)
            return True
        trial.set_user_attr("cost", cost)
        broken = {k: cost.get(k) for k, b in self.constraints.items() if (cost.get(k) or 0) > b}
        if broken:
            trial.set_user_attr("pruned_by", broken)
            study.tell(trial, state=TrialState.PRUNED)
            log.info("trial %d pruned before running: %s over its bound", trial.number, broken)
            return True
        if not self.needs_runs:
            values = objective_values(cost, self.objectives)
            study.tell(trial, values, state=None if values else TrialState.FAIL)
            return True
        return False

    def _launch(self, jobs: list[tuple[list[str], str]]) -> list[Optional[dict[str, Any]]]:
        """Launch ``(overrides, subdir)`` jobs; returns each run's results (``None``: failed)."""
        batch = [[*o, f"hydra.sweep.subdir={subdir}"] for o, subdir in jobs]
        returns = self.launcher.launch(batch, initial_job_idx=self._job_idx)
        self._job_idx += len(batch)
        out = []
        for ret, (_, subdir) in zip(returns, jobs):
            status = getattr(ret.status, "name", str(ret.status))
            output_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg else None
            results = _read_results(output_dir) if output_dir else None
            if status != "COMPLETED" or results is None:
                err = ret._return_value if status != "COMPLETED" else "no results.json"
                log.warning("job %s failed: %s", subdir, err)
                out.append(None)
            else:
                results["_dir"] = subdir
                out.append(results)
        return out

    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        assert self.config is not None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sweep_dir = str(self.config.hydra.sweep.dir)
        os.makedirs(sweep_dir, exist_ok=True)
        OmegaConf.save(self.config, os.path.join(sweep_dir, "multirun.yaml"))
        space = parse_search_space(self.params, arguments)
        if not space.distributions:
            raise SearchError(
                "hydra.sweeper.params: the search space is empty; give params in the sweeper "
                "config or sweeps on the command line (adc.bits=choice(4,6,8))"
            )
        study = self._study(sweep_dir)
        study.set_user_attr("fixed_overrides", space.fixed)
        self._recover(study)
        self._job_idx = len(study.trials)
        if not study.user_attrs.get("enqueued"):
            for params in self.enqueue:
                unknown = sorted(set(params) - set(space.distributions))
                if unknown:
                    log.warning("enqueue: %s not in the search space; ignored", unknown)
                known = {k: v for k, v in params.items() if k in space.distributions}
                if known:
                    study.enqueue_trial(known, skip_if_exists=True)
            study.set_user_attr("enqueued", True)
        log.info(
            "search %s: %d of %d trials done; storage %s",
            self.study_name,
            self._done(study),
            self.n_trials,
            study._storage.__class__.__name__,
        )
        while self._done(study) < self.n_trials:
            want = min(self.n_jobs, self.n_trials - self._done(study))
            runs = []
            for _ in range(want):
                trial = study.ask(space.distributions)
                overrides = space.overrides(trial.params)
                trial.set_user_attr("overrides", overrides)
                cost, reason = (None, "")
                if self.pre_evaluate or not self.needs_runs or self.constraints:
                    cost, reason = self._pre_evaluate(overrides)
                    if self._settle_without_run(study, trial, cost, reason):
                        continue
                runs.append((trial, overrides))
            if not runs:
                continue
            jobs = [([*o, *self.low], f"trial_{t.number:04d}") for t, o in runs]
            for (trial, _), results in zip(runs, self._launch(jobs)):
                values = None
                if results is not None:
                    objective = results.get("objective") or {}
                    values = objective_values(objective, self.objectives)
                    trial.set_user_attr("run", results["_dir"])
                    trial.set_user_attr("objective", objective)
                if values is None:
                    study.tell(trial, state=TrialState.FAIL)
                else:
                    study.tell(trial, values)
        self._promote(study)
        best = [t.number for t in study.best_trials] if study.best_trials else []
        log.info("search done: %d trials, Pareto front %s", len(study.trials), best)
        if self.report:
            from experiments.report import make_report

            out = make_report(sweep_dir)
            log.info("report: %s", out.get("png"))
        return study

    def _promote(self, study: Any) -> None:
        """Run the Pareto-front trials again at the high fidelity (once each)."""
        if not self.needs_runs or self.promote <= 0:
            return
        # the most accurate candidates first: the best design is chosen near the top accuracy
        acc = list(self.objectives).index("accuracy")
        best = sorted(study.best_trials, key=lambda t: -t.values[acc])
        front = [t for t in best if f"full_{t.number}" not in study.user_attrs]
        done = len(best) - len(front)
        front = front[: max(self.promote - done, 0)]
        if not front:
            return
        log.info("re-running %d Pareto trials at the high fidelity", len(front))
        jobs = [
            ([*t.user_attrs["overrides"], *self.high], f"trial_{t.number:04d}{FULL_SUFFIX}")
            for t in front
        ]
        for start in range(0, len(jobs), self.n_jobs):
            chunk = jobs[start : start + self.n_jobs]
            trials = front[start : start + self.n_jobs]
            for trial, results in zip(trials, self._launch(chunk)):
                if results is not None:
                    full = dict(results.get("objective") or {}, run=results["_dir"])
                    study.set_user_attr(f"full_{trial.number}", full)
