"""What one live attempt reports: the step's summary, counted as the session runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class AttemptReport:
    """The live step's summary."""

    session_date: str
    bars: int = 0
    decisions: int = 0
    orders: int = 0
    rejected: int = 0
    fills: int = 0
    reconnects: int = 0
    stream_restarts: int = 0
    refills: int = 0
    refilled_bars: int = 0
    minutes_without_bars: int = 0  # minutes decided with some symbol carrying its last price (no trades)
    halts: list[dict[str, str]] = field(default_factory=list)  # halts and resumptions seen on the stream
    lateness_p50_s: float | None = None  # market seconds from a minute's end to its decision
    lateness_p99_s: float | None = None
    orders_deferred: int = 0
    orders_held: int = 0  # wanted, but held: the trading cut-off, the liquidation, the risk state
    orders_not_sent: int = 0  # unknown outcome, unknown to the broker after a grace: never sent
    orders_resent: int = 0  # such an order sent again under its own client_order_id
    orders_halted: int = 0  # wanted in a symbol whose trading was halted: not sent
    orders_barred: int = 0  # not sent: the broker refused the symbol and side as not tradable/fractionable
    orders_scaled: int = 0  # buys scaled down (or dropped) before sending to fit the buying power
    orders_resized: int = 0  # refused for buying power, sent once more, smaller, under a derived id
    orders_refused_by_limit: dict[str, int] = field(default_factory=dict)  # refused by a pre-trade limit, by limit
    rejections_by_reason: dict[str, int] = field(default_factory=dict)  # refusals by kind (ports.REFUSALS)
    trading_blocked: str | None = None  # the broker's refusal that stopped every new order, if any
    credentials_refused: str | None = None  # the broker refused the key on an order: the attempt failed
    orders_past_deadline: int = 0  # handed to a worker, not sent: the trading cut-off came first
    orders_gate_closed: int = 0  # handed to a worker, not sent: the send gate closed while the worker held it
    syncs_dropped: int = 0  # broker snapshots read across a fill or an order: not applied
    bars_refused: int = 0
    late_bars_stored: int = 0
    bars_corrected: int = 0  # bars re-sent by the venue after late trades, stored in place of the first
    trade_updates_unparsed: int = 0
    fills_recovered: int = 0
    trade_stream_reconnects: int = 0
    first_seq: int | None = None
    first_live_decision_at: str | None = None  # wall time (UTC) of the first decision on a streamed minute
    fence_pauses: int = 0
    last_seq: int | None = None
    param_versions: list[int | None] = field(default_factory=list)
    params_refused: int = 0
    liquidating_seen: bool = False
    risk_state: str = "ACTIVE"  # at the end of the attempt
    risk_changes: list[dict[str, str]] = field(default_factory=list)  # operator halts, flattens, resumes seen
    loss_stop: str | None = None  # why the daily loss stop tripped in this attempt
    strategy_failures: int = 0  # minutes skipped: the strategy raised, overran its time budget or was refused
    strategy_failures_by_kind: dict[str, int] = field(default_factory=dict)  # raised, late, a refusal's kind
    strategy_reduced: str | None = None  # why the strategy's failures in a row moved the session to REDUCING
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_samples: int = 0
    answered_p50_ms: float | None = None
    answered_p99_ms: float | None = None
    start_equity: float | None = None
    end_equity: float | None = None
    writer: dict[str, int] = field(default_factory=dict)
    reconcile: dict[str, Any] = field(default_factory=dict)
    risk_clips: dict[str, dict[str, int]] = field(default_factory=dict)
    # the assets' terms read when the attempt prepared (a run allowing fractions or short sales): the universe's
    # fractionable symbols and its shortable and easy to borrow ones; the day's replay sizes and shorts by them
    asset_terms: dict[str, list[str]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of ``values`` (nearest rank), rounded to 3 decimals."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return round(ordered[k], 3)
