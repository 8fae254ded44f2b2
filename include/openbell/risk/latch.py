"""The send gate as an order worker sees it: the standing reason the live loop tells it, and the deadline
that honours it. A leaf (no strategy, no pandas): the order workers import it without the live loop's modules."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from openbell.ports import Deadline

GATE_CLOSED = "the send gate closed before it was sent"  # begins why a worker did not send a job it held


@dataclass
class GateLatch:
    """An order worker's copy of the gate's standing reason, set by the live loop (None: open)."""

    reason: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, reason: str | None) -> None:
        with self.lock:
            self.reason = reason


@dataclass(frozen=True)
class GatedDeadline(Deadline):
    """A job's deadline in an order worker: the cut-off, or sooner, the moment the gate closes."""

    latch: GateLatch = field(default_factory=GateLatch, compare=False)

    def refusal(self, wait: float = 0.0) -> str | None:
        reason = self.latch.reason
        if reason is not None:
            return f"{GATE_CLOSED}: {reason}"
        return super().refusal(wait)


def closed_in_worker(reason: str | None) -> bool:
    """``reason``, why an order job was not sent, says the send gate closed while a worker held it."""
    return reason is not None and reason.startswith(GATE_CLOSED)
