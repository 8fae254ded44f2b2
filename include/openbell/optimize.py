"""Parameter search with walk-forward validation, under a wall-time budget, on up to 2 processes.

Every candidate is evaluated once over all sessions (the strategy's vectorized twin, or ``on_minute``
replayed when it has none: :func:`openbell.strategy.targets`); the per-session sums of its minute returns
give the score of any window. Walk-forward: with ``train``
sessions per window, fold i picks the candidate with the best score on sessions [i-train, i) and
scores it on session i (the last session may be today so far). The out-of-sample score of
re-optimizing is the Sharpe of those picks' returns pooled over all folds; the incumbent (fixed) is
scored on the same sessions. ``best_params`` are the best on the latest ``train`` sessions and
``beats_incumbent`` says re-optimizing beat the incumbent out of sample (only then write a version).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from openbell.backtest import MINUTES_PER_YEAR, sharpe, simulate
from openbell.strategy import DEFAULT_UNIVERSE, InvalidParams, params_schema, strategy_class, targets, validate_params
from openbell.strategy.data import MarketArrays, prepare
from openbell.strategy.risk import RiskLimits

Dim = tuple[str, Any]  # ("int", (lo, hi)) | ("float", (lo, hi, lo_open)) | ("choice", [values])


@dataclass(frozen=True)
class Fold:
    """One walk-forward step."""

    train_sessions: list[int]
    test_session: int
    winner: dict[str, Any]
    train_score: float
    test_score: float
    incumbent_test_score: float | None


@dataclass(frozen=True)
class OptimizeResult:
    """What the search found; scores are annualized Sharpe ratios of net minute returns."""

    strategy: str
    best_params: dict[str, Any]
    in_sample: float  # best_params on the latest training window
    out_of_sample: float  # walk-forward: each fold's pick on its next session, pooled
    incumbent_params: dict[str, Any] | None
    incumbent_in_sample: float | None
    incumbent_out_of_sample: float | None
    beats_incumbent: bool
    evaluated: int  # candidates evaluated, the incumbent included
    budget_exhausted: bool
    folds: list[Fold] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)  # YYYYMMDD of the scored sessions


class _Evaluator:
    """Scores candidates on shared arrays; one per process."""

    def __init__(self, strategy: str, data: MarketArrays, first_unit: int, cost_bps: float,
                 limits: RiskLimits | None) -> None:
        self.cls = strategy_class(strategy)
        self.data = data
        self.first = int(data.session_starts[first_unit])
        self.offsets = (data.session_starts[first_unit:-1] - self.first).astype(np.intp)
        self.cost_bps = cost_bps
        self.limits = limits
        self.cache: dict[Any, Any] = {}

    def __call__(self, params: Sequence[dict[str, Any]]) -> np.ndarray:
        """(C, units, 3): count, sum and sum of squares of net minute returns per session."""
        out = np.empty((len(params), len(self.offsets), 3))
        for c, p in enumerate(params):
            model = self.cls.Params.model_validate(p)
            w = targets(self.cls, self.data, model, self.cache)
            net = simulate(self.data, w, self.cost_bps, self.limits)[0][self.first :]
            out[c, :, 0] = np.diff(np.r_[self.offsets, len(net)])
            out[c, :, 1] = np.add.reduceat(net, self.offsets)
            out[c, :, 2] = np.add.reduceat(net * net, self.offsets)
        return out


_WORKER: _Evaluator | None = None


def _work(params: list[dict[str, Any]]) -> np.ndarray:
    assert _WORKER is not None
    return _WORKER(params)


def search_space(strategy: str, space: Mapping[str, Any] | None = None) -> dict[str, Dim]:
    """Dimensions from the params' JSON schema, optionally narrowed by ``space``.

    ``space`` maps a field to ``(lo, hi)`` (numbers) or a list of values; both must lie in the schema.
    """
    props = params_schema(strategy)["properties"]
    dims: dict[str, Dim] = {}
    for name, prop in props.items():
        if "enum" in prop:
            dims[name] = ("choice", list(prop["enum"]))
        elif prop.get("type") in ("integer", "number"):
            lo_open = "exclusiveMinimum" in prop
            lo = prop.get("minimum", prop.get("exclusiveMinimum"))
            hi = prop.get("maximum")
            if lo is None or hi is None:
                continue
            dims[name] = ("int", (int(lo), int(hi))) if prop["type"] == "integer" else (
                "float", (float(lo), float(hi), lo_open))
    for name, spec in (space or {}).items():
        if name not in dims:
            raise InvalidParams(f"search space: {strategy} has no searchable parameter {name!r}")
        values = list(spec) if isinstance(spec, list) else None
        if values is None:
            if not (isinstance(spec, tuple) and len(spec) == 2 and dims[name][0] in ("int", "float")):
                raise InvalidParams(f"search space: {name} needs (lo, hi) or a list of values, got {spec!r}")
            values = [spec[0], spec[1]]
        for v in values:
            validate_params(strategy, {name: v})  # refuses values outside the schema
        if isinstance(spec, list):
            dims[name] = ("choice", values)
        elif spec[0] > spec[1]:
            raise InvalidParams(f"search space: {name} range {spec!r} is empty")
        elif dims[name][0] == "int":
            dims[name] = ("int", (int(spec[0]), int(spec[1])))
        else:
            dims[name] = ("float", (float(spec[0]), float(spec[1]), False))
    return dims


def candidates(dims: Mapping[str, Dim], n: int, seed: int, method: str = "random",
               grid_levels: int = 3) -> list[dict[str, Any]]:
    """Up to ``n`` distinct parameter sets, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    out: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()

    def add(c: dict[str, Any]) -> None:
        key = tuple(sorted(c.items()))
        if key not in seen:
            seen.add(key)
            out.append(c)

    if method == "grid":
        axes = {k: _levels(d, grid_levels) for k, d in dims.items()}
        points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
        if len(points) > n:
            points = [points[i] for i in sorted(rng.choice(len(points), size=n, replace=False))]
        for c in points:
            add(c)
        return out
    if method != "random":
        raise ValueError(f"method must be 'random' or 'grid', got {method!r}")
    attempts = 0
    while len(out) < n and attempts < 20 * n:
        attempts += 1
        add({k: _draw(d, rng) for k, d in dims.items()})
    return out


def _draw(dim: Dim, rng: np.random.Generator) -> Any:
    kind, spec = dim
    if kind == "choice":
        return spec[int(rng.integers(len(spec)))]
    if kind == "int":
        return int(rng.integers(spec[0], spec[1] + 1))
    lo, hi, lo_open = spec
    value = round(float(hi - (hi - lo) * rng.random()), 4)  # in (lo, hi]
    return value if value > lo or not lo_open else hi


def _levels(dim: Dim, k: int) -> list[Any]:
    kind, spec = dim
    if kind == "choice":
        return list(spec)
    if kind == "int":
        return sorted({int(v) for v in np.rint(np.linspace(spec[0], spec[1], k))})
    lo, hi, lo_open = spec
    pts = np.linspace(lo, hi, k + 1)[1:] if lo_open else np.linspace(lo, hi, k)
    return [round(float(v), 4) for v in pts]


def optimize(
    bars: pd.DataFrame,
    *,
    strategy: str = "momentum_rotation",
    incumbent: Mapping[str, Any] | BaseModel | None = None,
    universe: Sequence[str] = DEFAULT_UNIVERSE,
    train_sessions: int = 3,
    warmup_sessions: int = 1,
    method: str = "random",
    n_candidates: int = 256,
    grid_levels: int = 3,
    space: Mapping[str, Any] | None = None,
    seed: int = 0,
    budget_s: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    workers: int = 2,
    chunk_size: int = 8,
    cost_bps: float = 1.0,
    limits: RiskLimits | None = None,
    min_improvement: float = 0.0,
) -> OptimizeResult:
    """Search parameters on ``bars`` (prior sessions plus today so far) and compare with ``incumbent``.

    The first ``warmup_sessions`` sessions only warm signals up. The budget starts at the call; work
    stops being submitted once ``clock() - start >= budget_s`` (the first chunk always runs, chunks in
    flight finish) and the result says ``budget_exhausted``.
    """
    start = clock()
    if not (isinstance(workers, int) and 1 <= workers <= 2):
        raise ValueError(f"workers must be 1 or 2, got {workers!r}")
    if not (isinstance(budget_s, int | float) and budget_s >= 0):
        raise ValueError(f"budget_s must be a non-negative number, got {budget_s!r}")
    if not (isinstance(chunk_size, int) and chunk_size >= 1 and isinstance(n_candidates, int)
            and n_candidates >= 1):
        raise ValueError("chunk_size and n_candidates must be positive ints")
    inc = validate_params(strategy, incumbent).model_dump() if incumbent is not None else None
    data = prepare(bars, tuple(universe))
    units = data.n_sessions - warmup_sessions
    if not (isinstance(train_sessions, int) and train_sessions >= 1 and warmup_sessions >= 0):
        raise ValueError("train_sessions must be >= 1 and warmup_sessions >= 0")
    if units < train_sessions + 1:
        raise ValueError(
            f"need warmup ({warmup_sessions}) + train ({train_sessions}) + 1 sessions for one fold, "
            f"bars have {data.n_sessions}"
        )

    dims = search_space(strategy, space)
    pool = candidates(dims, n_candidates, seed, method, grid_levels)
    base = validate_params(strategy, None).model_dump()
    pool = [validate_params(strategy, {**base, **c}).model_dump() for c in pool]
    if inc is not None:
        pool = [inc, *[c for c in pool if c != inc]]
    chunks = [pool[i : i + chunk_size] for i in range(0, len(pool), chunk_size)]
    args = (strategy, data, warmup_sessions, cost_bps, limits)

    results: dict[int, np.ndarray] = {}
    exhausted = False
    evaluate = _Evaluator(*args)
    results[0] = evaluate(chunks[0])  # always runs; also fills the caches forked workers inherit
    if workers == 1:
        for i in range(1, len(chunks)):
            if clock() - start >= budget_s:
                exhausted = True
                break
            results[i] = evaluate(chunks[i])
    elif len(chunks) > 1:
        exhausted = _run_pool(chunks, evaluate, workers, start, budget_s, clock, results)

    done = [i for i in range(len(chunks)) if i in results]
    evaluated = [c for i in done for c in chunks[i]]
    agg = np.concatenate([results[i] for i in done])
    return _walk_forward(strategy, data, warmup_sessions, train_sessions, evaluated, agg,
                         inc is not None, min_improvement, exhausted)


def _run_pool(chunks: list[list[dict[str, Any]]], evaluate: _Evaluator, workers: int, start: float,
              budget_s: float, clock: Callable[[], float], results: dict[int, np.ndarray]) -> bool:
    """Chunks 1.. on forked workers that inherit ``evaluate`` (arrays and caches) without copying."""
    global _WORKER
    _WORKER = evaluate
    try:
        with _children_allowed():
            return _submit_all(chunks, workers, start, budget_s, clock, results)
    finally:
        _WORKER = None


@contextlib.contextmanager
def _children_allowed() -> Iterator[None]:
    """A step run by a Celery prefork worker inherits the pool process's daemon flag, and multiprocessing refuses a
    daemonic process children ("daemonic processes are not allowed to have children"). The search's workers are
    its own and shut down before it returns, so the flag is lifted while they run."""
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    daemon = config.pop("daemon", None)
    try:
        yield
    finally:
        if daemon is not None:
            config["daemon"] = daemon


def _submit_all(chunks: list[list[dict[str, Any]]], workers: int, start: float, budget_s: float,
                clock: Callable[[], float], results: dict[int, np.ndarray]) -> bool:
    ctx = multiprocessing.get_context("fork")
    exhausted = False
    nxt = 1
    pending: dict[Future[np.ndarray], int] = {}
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:

        def submit() -> None:
            nonlocal nxt, exhausted
            if exhausted or nxt >= len(chunks):
                return
            if clock() - start >= budget_s:
                exhausted = True
                return
            pending[ex.submit(_work, chunks[nxt])] = nxt
            nxt += 1

        for _ in range(2 * workers):
            submit()
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=pending.__getitem__):
                results[pending.pop(fut)] = fut.result()
                submit()
    return exhausted


def _walk_forward(strategy: str, data: MarketArrays, warmup: int, train: int, pool: list[dict[str, Any]],
                  agg: np.ndarray, has_incumbent: bool, min_improvement: float,
                  exhausted: bool) -> OptimizeResult:
    days = data.session_days()[warmup:]
    n_units = agg.shape[1]
    csum = np.concatenate([np.zeros((agg.shape[0], 1, 3)), np.cumsum(agg, axis=1)], axis=1)

    def window_scores(a: int, b: int) -> np.ndarray:
        n, s1, s2 = (csum[:, b] - csum[:, a]).T
        with np.errstate(invalid="ignore", divide="ignore"):
            var = (s2 - s1 * s1 / n) / (n - 1)
            out = s1 / n / np.sqrt(var) * np.sqrt(MINUTES_PER_YEAR)
        return np.where((n >= 2) & (var > 1e-24), out, 0.0)

    folds: list[Fold] = []
    picked = np.zeros(3)
    inc_total = np.zeros(3)
    for i in range(train, n_units):
        sc = window_scores(i - train, i)
        win = int(np.argmax(sc))  # first on ties: the incumbent when it ties
        picked += agg[win, i]
        if has_incumbent:
            inc_total += agg[0, i]
        folds.append(Fold(
            train_sessions=days[i - train : i], test_session=days[i], winner=pool[win],
            train_score=float(sc[win]), test_score=sharpe(*agg[win, i]),
            incumbent_test_score=sharpe(*agg[0, i]) if has_incumbent else None,
        ))
    latest = window_scores(n_units - train, n_units)
    best = int(np.argmax(latest))
    oos = sharpe(*picked)
    inc_oos = sharpe(*inc_total) if has_incumbent else None
    beats = (not has_incumbent) or (best != 0 and oos > inc_oos + min_improvement)  # type: ignore[operator]
    return OptimizeResult(
        strategy=strategy,
        best_params=pool[best],
        in_sample=float(latest[best]),
        out_of_sample=oos,
        incumbent_params=pool[0] if has_incumbent else None,
        incumbent_in_sample=float(latest[0]) if has_incumbent else None,
        incumbent_out_of_sample=inc_oos,
        beats_incumbent=bool(beats),
        evaluated=len(pool),
        budget_exhausted=exhausted,
        folds=folds,
        sessions=days,
    )


def describe(result: OptimizeResult) -> str:
    """One line for logs."""
    inc = "" if result.incumbent_out_of_sample is None else (
        f" vs incumbent oos {result.incumbent_out_of_sample:.2f}")
    cut = " (budget exhausted)" if result.budget_exhausted else ""
    return (f"{result.strategy}: {result.evaluated} sets{cut}"
            f", best in-sample {result.in_sample:.2f}, walk-forward oos {result.out_of_sample:.2f}{inc}"
            f", {'replace' if result.beats_incumbent else 'keep'} incumbent")

