"""Injected faults, set by flags at start or at runtime through ``POST /sim/faults``, each counted."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from openbell.sim.errors import bad_request
from openbell.sim.playback import parse_hhmm
from openbell.sim.symbols import parse_symbol

# Upper bounds of the numeric settings (the lower bound is 0).
LIMITS = {"refuse_reconnect_seconds": 86_400.0, "rest_error_rate": 1.0, "rest_delay_ms": 60_000.0}


def _hhmm(text: Any) -> str:
    if not isinstance(text, str):
        raise ValueError(f"expected HH:MM, got {text!r}")
    h, m, _ = parse_hhmm(text)
    return f"{h:02d}:{m:02d}"


def parse_silence(text: str) -> tuple[str, int]:
    """``HH:MM:MINUTES`` -> ("HH:MM", minutes)."""
    parts = str(text).split(":")
    if len(parts) != 3:
        raise ValueError(f"expected HH:MM:MINUTES, got {text!r}")
    try:
        minutes = int(parts[2])
    except ValueError:
        raise ValueError(f"expected HH:MM:MINUTES, got {text!r}") from None
    if minutes <= 0:
        raise ValueError(f"silence must last at least one minute, got {text!r}")
    return _hhmm(f"{parts[0]}:{parts[1]}"), minutes


@dataclass
class Faults:
    """Fault settings (market times are Eastern HH:MM) and their counters."""

    drop_streams_at: list[str] = field(default_factory=list)
    silence_at: list[tuple[str, int]] = field(default_factory=list)
    refuse_reconnect_seconds: float = 0.0
    rest_error_rate: float = 0.0
    rest_delay_ms: float = 0.0
    reject_symbols: list[str] = field(default_factory=list)
    partial_fills: bool = False
    sip_allowed: bool = True
    counters: dict[str, int] = field(default_factory=lambda: {
        "stream_drop_events": 0,
        "stream_connections_dropped": 0,
        "silence_windows": 0,
        "silent_minutes": 0,
        "reconnects_refused": 0,
        "connection_limit_refusals": 0,
        "rest_429": 0,
        "rest_500": 0,
        "rest_delayed": 0,
        "orders_rejected": 0,
    })
    rng: random.Random = field(default_factory=lambda: random.Random(7), repr=False)

    def settings(self) -> dict[str, Any]:
        return {
            "drop_streams_at": list(self.drop_streams_at),
            "silence_at": [f"{t}:{m}" for t, m in self.silence_at],
            "refuse_reconnect_seconds": self.refuse_reconnect_seconds,
            "rest_error_rate": self.rest_error_rate,
            "rest_delay_ms": self.rest_delay_ms,
            "reject_symbols": list(self.reject_symbols),
            "partial_fills": self.partial_fills,
            "sip_allowed": self.sip_allowed,
        }

    def snapshot(self) -> dict[str, Any]:
        return {"settings": self.settings(), "counters": dict(self.counters)}

    def update(self, body: Any) -> None:
        """Apply a partial settings dict; on any invalid value nothing changes (400)."""
        if not isinstance(body, dict):
            raise bad_request("expected a JSON object of fault settings")
        known = set(self.settings()) | {"drop_streams_now", "silence_now"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise bad_request(f"unknown fault setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        new: dict[str, Any] = {}
        try:
            if "drop_streams_at" in body:
                new["drop_streams_at"] = [_hhmm(t) for t in _as_list(body["drop_streams_at"])]
            if "silence_at" in body:
                new["silence_at"] = [parse_silence(t) for t in _as_list(body["silence_at"])]
            if "silence_now" in body:
                silence_minutes(body["silence_now"])
            for key, top in LIMITS.items():
                if key in body:
                    new[key] = _number(body[key], key, top)
            if "reject_symbols" in body:
                new["reject_symbols"] = [parse_symbol(s) for s in _as_list(body["reject_symbols"])]
            for key in ("partial_fills", "sip_allowed"):
                if key in body:
                    if not isinstance(body[key], bool):
                        raise ValueError(f"{key} must be true or false")
                    new[key] = body[key]
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        for k, v in new.items():
            setattr(self, k, v)

    def rest_fault(self) -> int | None:
        """429 or 500 for this REST call (counted), or None."""
        if self.rest_error_rate <= 0 or self.rng.random() >= self.rest_error_rate:
            return None
        status = 429 if self.rng.random() < 0.5 else 500
        self.counters[f"rest_{status}"] += 1
        return status


def silence_minutes(v: Any) -> int:
    """The length of a ``silence_now`` window: whole market minutes, 1 to a session's 390."""
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 390:
        raise ValueError("silence_now must be a whole number of minutes from 1 to 390")
    return v


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list):
        raise ValueError(f"expected a list, got {v!r}")
    return v


def _number(v: Any, key: str, top: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= top:  # NaN fails the comparison
        raise ValueError(f"{key} must be a number from 0 to {top:g}")
    return float(v)
