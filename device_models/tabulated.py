"""A cell defined by a table of measured levels: mean, spread and optional drift exponent."""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import torch
from torch import Tensor

from device_models import functional as F
from device_models._checks import (
    G_MAX_LIMIT_US,
    SCALE_LIMIT,
    TIME_LIMIT_S,
    check_bounded,
    check_g_range,
    check_numbers,
)
from device_models.base import DeviceModel, check_conductance, check_time
from device_models.registry import register_device

__all__ = ["Tabulated", "read_levels_csv", "EXAMPLE_CSV", "CSV_COLUMNS"]

#: The bundled *illustrative* table (not measurements) that ``Tabulated()`` loads by default.
EXAMPLE_CSV = Path(__file__).parent / "data" / "example_levels.csv"

#: Required and optional CSV columns: level mean (µS), level spread (µS), drift exponent.
CSV_COLUMNS = {"required": ("mean_us", "std_us"), "optional": ("nu",)}


def read_levels_csv(path: str | os.PathLike) -> dict[str, Optional[list[float]]]:
    """Read a level table: a header row, then one row per level; ``#`` lines are comments.

    Columns ``mean_us`` (mean conductance of the level, µS) and ``std_us`` (its standard
    deviation right after programming, µS) are required; ``nu`` (drift exponent of the level)
    is optional; other columns are ignored. Every cell must be a finite number >= 0.

    Returns:
        ``{"means": [...], "stds": [...], "nus": [...] or None}`` in file order.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a missing column, no data rows, a non-numeric, negative or non-finite cell,
            naming the line and column.
    """
    where = f"Tabulated.csv_path={str(path)!r}"
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{where}: no such file")
    with p.open(newline="", encoding="utf-8") as fh:
        rows = [
            (i, row)
            for i, row in enumerate(csv.reader(fh), start=1)
            if row and "".join(row).strip() and not row[0].lstrip().startswith("#")
        ]
    if not rows:
        raise ValueError(f"{where}: the file has no header row {','.join(CSV_COLUMNS['required'])}")
    header = [h.strip() for h in rows[0][1]]
    missing = [c for c in CSV_COLUMNS["required"] if c not in header]
    if missing:
        raise ValueError(
            f"{where}: missing column(s) {missing} (found {header}); expected the columns "
            f"mean_us,std_us and optionally nu"
        )
    if len(rows) < 2:
        raise ValueError(f"{where}: the table has a header but no level rows")
    wanted = [c for c in (*CSV_COLUMNS["required"], *CSV_COLUMNS["optional"]) if c in header]
    cols: dict[str, list[float]] = {c: [] for c in wanted}
    for line, row in rows[1:]:
        for c in wanted:
            j = header.index(c)
            cell = row[j].strip() if j < len(row) else ""
            try:
                value = float(cell)
            except ValueError:
                raise ValueError(
                    f"{where}: line {line}, column {c!r}: {cell!r} is not a number"
                ) from None
            if not math.isfinite(value) or value < 0:
                raise ValueError(
                    f"{where}: line {line}, column {c!r}: values must be finite and >= 0, "
                    f"got {cell!r}"
                )
            cols[c].append(value)
    return {"means": cols["mean_us"], "stds": cols["std_us"], "nus": cols.get("nu")}


@register_device("tabulated")
@dataclass
class Tabulated(DeviceModel):
    r"""A cell with a finite set of measured levels: programming picks the nearest level.

    For a target ``G_target`` (µS, clipped to ``[g_min, g_max]``) programming picks the level
    ``k`` whose mean is nearest (ties to the lower level) and draws
    ``G_prog = max(mean_k + s_p std_k ε, 0)``, ``ε ~ N(0, 1)``. With a drift exponent per level,
    ``G(t) = G_prog ((t + t0) / t0)^(-s_d ν_k)`` (the PCM drift law; ``nu`` 0 or absent: no
    drift). Reads are exact (the table carries no read-noise column).

    Build it from lists (configs cannot hold tensors), from a CSV file a user has
    (``Tabulated.from_csv(path)`` or ``csv_path=...`` in YAML; columns ``mean_us``, ``std_us``,
    optional ``nu``; see :func:`read_levels_csv`), or with no arguments, which loads the bundled
    ``data/example_levels.csv``: an **illustrative** 8-level table, not measurements.

    Args:
        means: mean conductance of every level in µS (>= 2 distinct values, >= 0, any order).
        stds: standard deviation of every level in µS (>= 0), same length as ``means``.
        nus: drift exponent of every level (>= 0), or ``None`` for no drift.
        csv_path: a CSV table to load ``means``/``stds``/``nus`` from; lists given as well must
            agree with the file.
        g_max: largest target in µS; ``None`` takes the largest level mean.
        g_min: smallest target in µS; ``None`` takes the smallest level mean.
        t0: drift reference time in s (20 s, as in the PCM model).
        prog_noise_scale: ``s_p``, multiplies every ``std``; 0 programs the level means exactly.
        drift_scale: ``s_d``, multiplies every ``nu``; 0 turns drift off.

    State: ``"g"`` (µS), and ``"nu"`` when the table has drift exponents.

    Examples:
        >>> dev = Tabulated(means=[0.0, 10.0, 20.0], stds=[0.0, 0.0, 0.0])
        >>> dev.program(torch.tensor([1.0, 6.0, 19.0]))["g"]
        tensor([ 0., 10., 20.])
    """

    name: ClassVar[str] = "tabulated"
    means: Optional[list[float]] = None
    stds: Optional[list[float]] = None
    nus: Optional[list[float]] = None
    csv_path: Optional[str] = None
    g_max: Optional[float] = None
    g_min: Optional[float] = None
    t0: float = 20.0
    prog_noise_scale: float = 1.0
    drift_scale: float = 1.0

    def __post_init__(self) -> None:
        self._source = "lists"
        if self.csv_path is not None:
            if not isinstance(self.csv_path, (str, os.PathLike)):
                raise TypeError(f"Tabulated.csv_path must be a path or None, got {self.csv_path!r}")
            self.csv_path = str(self.csv_path)
            self._source = self.csv_path
            self._fill_from(read_levels_csv(self.csv_path), f"csv_path={self.csv_path!r}")
        elif self.means is None and self.stds is None and self.nus is None:
            self._fill_from(read_levels_csv(EXAMPLE_CSV), "the bundled example")
            self._source = "bundled example (illustrative)"
        if self.means is None or self.stds is None:
            missing = "means" if self.means is None else "stds"
            raise ValueError(
                f"Tabulated.{missing} is missing: give means and stds (µS per level) or a csv_path"
            )
        self.means = [float(v) for v in self._checked("means", self.means)]
        self.stds = [float(v) for v in self._checked("stds", self.stds)]
        if self.nus is not None:
            self.nus = [float(v) for v in self._checked("nus", self.nus)]
        if len(set(self.means)) < 2 or len(set(self.means)) != len(self.means):
            raise ValueError(
                f"Tabulated.means must hold at least 2 distinct level means, got {self.means}"
            )
        if self.g_max is None:
            self.g_max = max(self.means)
        if self.g_min is None:
            self.g_min = min(self.means)
        check_g_range("Tabulated", self.g_min, self.g_max)
        check_bounded("Tabulated", "t0", self.t0, 0.0, TIME_LIMIT_S, " s", open_lo=True)
        check_bounded("Tabulated", "prog_noise_scale", self.prog_noise_scale, 0.0, SCALE_LIMIT)
        check_bounded("Tabulated", "drift_scale", self.drift_scale, 0.0, SCALE_LIMIT)
        # The levels sorted by mean (plain attributes, not dataclass fields: configs stay lists).
        order = sorted(range(len(self.means)), key=self.means.__getitem__)
        self._sorted = {
            "means": [self.means[i] for i in order],
            "stds": [self.stds[i] for i in order],
            "nus": None if self.nus is None else [self.nus[i] for i in order],
        }

    def _fill_from(self, table: dict[str, Optional[list[float]]], source: str) -> None:
        for key in ("means", "stds", "nus"):
            given = getattr(self, key)
            if given is None:
                setattr(self, key, table[key])
            elif table[key] is None or [float(v) for v in given] != table[key]:
                raise ValueError(
                    f"Tabulated.{key}={given!r} disagrees with {source}; "
                    f"give either the lists or the CSV file"
                )

    def _checked(self, key: str, values: list[float]) -> list[float]:
        check_numbers("Tabulated", key, values, length=None)
        if key != "means" and len(values) != len(self.means):
            raise ValueError(
                f"Tabulated.{key} must have one entry per level ({len(self.means)} means), "
                f"got {len(values)}"
            )
        bad = [v for v in values if v < 0]
        if bad:
            raise ValueError(f"Tabulated.{key} must be >= 0, got {bad[0]!r} in {list(values)}")
        hi = 1.0 if key == "nus" else G_MAX_LIMIT_US  # drift exponents; conductances in µS
        for i, v in enumerate(values):
            check_bounded("Tabulated", f"{key}[{i}]", v, 0.0, hi)
        return values

    @classmethod
    def from_csv(cls, path: str | os.PathLike, **overrides) -> Tabulated:
        """A device with the levels of the CSV file at ``path`` (see :func:`read_levels_csv`)."""
        return cls(csv_path=str(path), **overrides)

    # --- the interface -------------------------------------------------------------------------
    def _level_tensor(self, key: str, like: Tensor) -> Tensor:
        return torch.tensor(self._sorted[key], dtype=like.dtype, device=like.device)

    def program(
        self, g_target: Tensor, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Pick the nearest level of every target and draw from its measured distribution."""
        check_conductance(g_target)
        means = self._level_tensor("means", g_target)
        k = self.level_index(g_target)
        mean = means[k]
        if self.prog_noise_scale > 0:
            std = self.prog_noise_scale * self._level_tensor("stds", g_target)[k]
            g = F.program_conductance(mean, std, generator)
        else:
            g = mean
        state = {"g": g}
        if self.nus is not None:
            state["nu"] = self.drift_scale * self._level_tensor("nus", g_target)[k]
        return state

    def conductance(self, state: dict[str, Tensor], t: float) -> Tensor:
        """``G_prog ((t + t0) / t0)^(-ν)`` with the level's ν (µS); ``G_prog`` without drift."""
        t = check_time(t)
        if t == 0 or not self.drifts:
            return state["g"]
        return F.apply_drift(state["g"], state["nu"], t, self.t0)

    def read_noise_std(self, state: dict[str, Tensor], t: float) -> Tensor | None:
        """``None``: the table has no read-noise column, so reads are exact."""
        check_time(t)
        return None

    # --- helpers and facts ---------------------------------------------------------------------
    def level_index(self, g_target: Tensor) -> Tensor:
        """Index (int64) of the nearest level, in ascending order of the level means."""
        g = g_target.clamp(self.g_min, self.g_max)
        return F.nearest_level(g, self._level_tensor("means", g))

    @property
    def level_means(self) -> list[float]:
        """Level means in µS, ascending."""
        return list(self._sorted["means"])

    @property
    def is_ideal(self) -> bool:
        return False

    @property
    def drifts(self) -> bool:
        return self.nus is not None and self.drift_scale > 0 and any(v > 0 for v in self.nus)

    def state_keys(self) -> tuple[str, ...]:
        return ("g",) if self.nus is None else ("g", "nu")

    def describe(self) -> str:
        n = len(self.means)
        return f"tabulated({n} levels, {self.g_min:g}..{self.g_max:g} µS, {self._source})"
