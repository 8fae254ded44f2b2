"""What one trading attempt trades and how: :class:`LoopSettings`, every field with its default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openbell.policy import OrderLimits
from openbell.strategy import RiskGate, RiskLimits
from openbell.strategy.base import DEFAULT_UNIVERSE
from openbell.trading.guard import DEFAULT_BUDGET_SECONDS, DEFAULT_REDUCE_AFTER


@dataclass(frozen=True)
class LoopSettings:
    """The strategy (``strategy_name``; ``params_override`` fixes its parameters, else the stored version in
    force), the risk limits (or a restored gate; its ``allow_short`` lets short weights through), the universe,
    the order rules (``min_notional``, ``rebalance_band``, ``fractional`` sizing for fractionable assets,
    ``order_type`` "market", "limit" with its ``limit_collar``, or "notional" for the buys of fractionable
    assets) and pre-trade limits, the warmup, the stream
    watchdog (``silence_minutes``), how long a minute waits for its bars (``grace_seconds`` of market time, at
    least ``wall_grace`` wall seconds), how often the broker is synced (every ``sync_every`` decisions), the
    order workers (processes and their threads), the market time no order may reach (``trade_until``; default
    the close), the trade stream's reconnect backoff (wall seconds), the market seconds a strategy's
    ``on_minute`` may take (``strategy_budget_seconds``) and the strategy's failures in a row that move the
    session to REDUCING (``strategy_failures_to_reduce``)."""

    strategy_name: str = "momentum_rotation"
    params_override: dict[str, Any] | None = None
    risk: RiskLimits | RiskGate | None = None
    universe: Sequence[str] = DEFAULT_UNIVERSE
    min_notional: float = 100.0
    rebalance_band: float = 0.0
    limits: OrderLimits | None = None
    fractional: bool = False
    order_type: str = "market"
    limit_collar: float = 0.002
    warmup_sessions: int = 5
    silence_minutes: float = 3.0
    grace_seconds: float = 2.0
    wall_grace: float = 0.15
    sync_every: int = 1
    order_workers: int = 1  # processes sending orders; a second one measured no faster (session_bench)
    order_threads: int | None = None
    trade_until: datetime | None = None
    trade_stream_backoff: tuple[float, float] = (0.25, 5.0)
    strategy_budget_seconds: float = DEFAULT_BUDGET_SECONDS
    strategy_failures_to_reduce: int = DEFAULT_REDUCE_AFTER
