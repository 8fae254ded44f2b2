"""Order workers for the live loop: processes started and connected before the first bar.

An order must not wait for the live loop, the Postgres writer or another order to release Python's
GIL, so orders are sent from worker processes (:func:`main`), each with its own interpreter, a few
threads and one :class:`~openbell.ports.OrderChannel` per thread whose kept-open connection is opened
at start. Jobs and results cross the worker's stdin/stdout as length-prefixed pickles; the broker port
(with its credentials) travels the same private pipe, never the command line. The instants a worker
reports are ``time.perf_counter`` readings, the system-wide monotonic clock on Linux, so the live loop
can subtract its own readings from them.

A worker that dies takes its jobs in flight with it: they come back ``unknown`` (the live loop
polls the broker for them), and a job that no worker could take comes back ``rejected``, never sent.
A worker whose live loop is gone (end of file on stdin, or its parent process died and it was
reparented) finishes what it holds for at most ``PARENT_GRACE`` seconds, then exits.

The send gate reaches the workers too (:meth:`OrderSender.gate`): while the loop's gate stands closed (the
session liquidating, the account blocked, the key refused, the risk state HALTED), a job a worker still holds
is not sent; it comes back ``not_sent`` with the reason (``unknown`` after an attempt that may have reached
the broker), as a job past its deadline does.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import openbell
from openbell.cpu import short_slice
from openbell.heap import release_free_memory
from openbell.ports import BrokerPort, Deadline, SubmitResult
from openbell.risk.latch import GatedDeadline, GateLatch
from openbell.trading.supervision import SupervisorWatch

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!I")
# seconds; the stdin reader must hand a job on at once, not after Python's default of 5 ms
WORKER_SWITCH_INTERVAL = 0.0001
PARENT_GRACE = 3.0  # seconds a worker whose parent died may still finish its jobs in flight
_PARENT_ENV = "OPENBELL_ORDER_WORKER_PARENT"


@dataclass(frozen=True)
class OrderJob:
    """One order to send under its deterministic id, not after ``deadline`` (market time: the trading
    cut-off; the worker checks it before each request and never waits for the budget past it): a market
    order, a limit order at ``limit_price``, or a market order for ``notional`` dollars (``qty`` the estimate)."""

    client_order_id: str
    symbol: str
    qty: float
    side: str
    deadline: Deadline | None = None
    limit_price: float | None = None
    notional: float | None = None


@dataclass(frozen=True)
class Sent:
    """What became of a job. ``sent_at`` (handed to the HTTP client) and ``answered_at`` (the
    broker's reply is back) are ``perf_counter`` instants, NaN when the job never reached a client."""

    job: OrderJob
    tag: Any
    result: SubmitResult
    sent_at: float = math.nan
    answered_at: float = math.nan


OnSent = Callable[[Sent], None]


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


def _read_frame(stream: IO[bytes]) -> Any:
    """The next object on ``stream``; EOFError when the other side is gone."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


class _Worker:
    """The live loop's side of one worker process."""

    def __init__(self, index: int, broker: BrokerPort, threads: int, on_sent: OnSent) -> None:
        self.index = index
        self.on_sent = on_sent
        self.ready = threading.Event()
        self.alive = True
        self.in_flight: dict[int, tuple[OrderJob, Any]] = {}  # by a number of this worker's own
        self._next = 0
        self._lock = threading.Lock()
        root = str(Path(openbell.__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
               _PARENT_ENV: str(os.getpid())}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from openbell.trading.sender import main; main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout
        self._write(_frame((broker, threads)))
        self.reader = threading.Thread(target=self._read, name=f"openbell-orders-{index}", daemon=True)
        self.reader.start()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._in, view) :]

    def send(self, items: list[tuple[OrderJob, Any]]) -> bool:
        """Hand the ``(job, tag)`` pairs to the worker in one write; False if it is gone (none was sent)."""
        with self._lock:
            if not self.alive:
                return False
            first = self._next
            try:
                self._write(b"".join(_frame((first + i, job)) for i, (job, _) in enumerate(items)))
            except OSError:
                self.alive = False
                return False
            for i, item in enumerate(items):
                self.in_flight[first + i] = item
            self._next += len(items)
            return True

    def load(self) -> int:
        return len(self.in_flight)

    def gate(self, reason: str | None) -> None:
        """Tell the worker the send gate's standing reason (None: open)."""
        with self._lock:
            if self.alive:
                try:
                    self._write(_frame(("gate", reason)))
                except OSError:
                    self.alive = False

    def stop(self, timeout: float) -> None:
        with self._lock, contextlib.suppress(OSError):
            self._write(_frame(None))
        self.reader.join(timeout)
        try:
            self.proc.wait(max(0.1, timeout))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        self._out.close()

    def _read(self) -> None:
        try:
            while True:
                msg = _read_frame(self._out)
                if msg[0] == "ready":
                    if msg[1]:
                        log.warning("order worker %d warm-up failed: %s", self.index, msg[1])
                    self.ready.set()
                    continue
                _, number, result, sent_at, answered_at = msg
                with self._lock:
                    job, tag = self.in_flight.pop(number)
                self.on_sent(Sent(job, tag, result, sent_at, answered_at))
        except EOFError:
            pass
        except Exception:
            log.exception("order worker %d: unreadable reply", self.index)
        with self._lock:
            self.alive = False
            lost = list(self.in_flight.values())
            self.in_flight.clear()
        self.ready.set()
        for job, tag in lost:  # sent or not, nobody knows: the broker is asked later
            self.on_sent(Sent(job, tag, SubmitResult(job.client_order_id, "unknown", reason="order worker exited")))
        if lost:
            log.error("order worker %d exited with %d orders in flight", self.index, len(lost))


class OrderSender:
    """``workers`` order processes of ``threads`` threads each; ``on_sent`` gets every outcome (on
    a reader thread)."""

    def __init__(self, broker: BrokerPort, on_sent: OnSent, *, workers: int = 2, threads: int = 6) -> None:
        self.broker = broker
        self.on_sent = on_sent
        self.threads = max(1, threads)
        self._count = max(1, workers)
        self._workers: list[_Worker] = []
        self._gate: str | None = None  # the send gate's standing reason, told to every worker

    def start(self, timeout: float = 15.0) -> None:
        """Start the workers and wait (up to ``timeout``) until each has connected."""
        self._workers = [self._spawn(i) for i in range(self._count)]
        deadline = time.monotonic() + timeout
        for w in self._workers:
            if not w.ready.wait(max(0.0, deadline - time.monotonic())):
                log.warning("order worker %d not connected within %.1fs; going on", w.index, timeout)

    def _spawn(self, index: int) -> _Worker:
        worker = _Worker(index, self.broker, self.threads, self.on_sent)
        if self._gate is not None:
            worker.gate(self._gate)
        return worker

    def gate(self, reason: str | None) -> None:
        """The send gate closed for ``reason`` (None: open again): the workers send no job they still hold
        while it stands closed."""
        self._gate = reason
        for w in self._workers:
            w.gate(reason)

    def submit(self, job: OrderJob, tag: Any = None) -> None:
        """Hand one job to the least busy live worker (see :meth:`submit_all`)."""
        self.submit_all([(job, tag)])

    def submit_all(self, items: Sequence[tuple[OrderJob, Any]]) -> None:
        """Spread the ``(job, tag)`` pairs over the live workers, the least busy first, with one
        write per worker: a decision's orders leave together, not each after a write of its own that
        lets another thread or process take the core. A new worker is started if none is left."""
        pending = list(items)
        while pending and (live := [w for w in self._workers if w.alive]):
            loads = {w: w.load() for w in live}
            shares: dict[_Worker, list[tuple[OrderJob, Any]]] = {w: [] for w in live}
            for item in pending:
                w = min(loads, key=loads.__getitem__)
                shares[w].append(item)
                loads[w] += 1
            pending = [item for w, share in shares.items() if share and not w.send(share) for item in share]
        if not pending:
            return
        log.error("no order worker is alive; starting one")
        try:
            w = self._spawn(len(self._workers))
            self._workers.append(w)
            if w.send(pending):
                return
        except OSError as exc:
            log.error("could not start an order worker: %s", exc)
        for job, tag in pending:
            result = SubmitResult(job.client_order_id, "rejected", reason="not sent: no order worker")
            self.on_sent(Sent(job, tag, result))

    def close(self, timeout: float = 30.0) -> None:
        """Let the workers finish what they hold (a job past its deadline comes back ``not_sent``), then stop
        them."""
        for w in self._workers:
            w.stop(timeout)


# -- the worker process -----------------------------------------------------------------------------


def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    broker: BrokerPort
    broker, threads = _read_frame(stdin)
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL)
    short_slice()  # this thread and the senders ask for short time slices (see openbell.cpu)
    jobs: queue.SimpleQueue[tuple[int, OrderJob] | None] = queue.SimpleQueue()
    latch = GateLatch()
    out_lock = threading.Lock()
    ready = threading.Barrier(threads + 1)
    warnings: list[str] = []

    def reply(msg: tuple[Any, ...]) -> None:
        with out_lock, contextlib.suppress(BrokenPipeError):  # a gone live loop reads nothing more
            stdout.write(_frame(msg))
            stdout.flush()

    def run() -> None:
        short_slice()
        channel = broker.order_channel()
        try:
            channel.connect()  # opens the keep-alive connection the orders will use
        except Exception as exc:
            warnings.append(broker.describe(exc))
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait(10.0)
        while (item := jobs.get()) is not None:
            number, job = item
            sent_at = time.perf_counter()
            kind = {k: v for k, v in (("limit_price", job.limit_price), ("notional", job.notional)) if v is not None}
            try:
                result = channel.submit_market(job.client_order_id, job.symbol, job.qty, job.side,
                                               deadline=_gated(job.deadline, latch), **kind)
            except Exception as exc:
                result = SubmitResult(job.client_order_id, "unknown", reason=broker.describe(exc))
            reply(("sent", number, result, sent_at, time.perf_counter()))

    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for t in workers:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait(10.0)
    gc.collect()
    gc.freeze()  # start-up's objects stay out of the collections an order could otherwise wait for
    release_free_memory()  # what the imports and the connections' set-up freed
    reply(("ready", "; ".join(sorted(set(warnings)))))
    try:
        while (item := _read_frame(stdin)) is not None:
            if item[0] == "gate":
                latch.set(item[1])
            else:
                jobs.put(item)
    except EOFError:  # the live loop is gone: finish what is queued, then go
        pass
    for _ in workers:
        jobs.put(None)
    for t in workers:
        t.join()


def _gated(deadline: Deadline | None, latch: GateLatch) -> GatedDeadline:
    """``deadline`` (None: none), or sooner: the moment the send gate closes."""
    if deadline is None:
        return GatedDeadline(datetime.max.replace(tzinfo=UTC), math.inf, latch)
    return GatedDeadline(deadline.at, deadline.due, latch)


def main() -> None:
    """Serve jobs from stdin until it closes; replies go to the original stdout, everything a
    library prints to stdout goes to stderr instead."""
    logging.basicConfig(level=logging.WARNING, format="openbell order worker %(process)d: %(levelname)s %(message)s")
    stdout = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    parent = int(os.environ.get(_PARENT_ENV) or os.getppid())
    watch = SupervisorWatch(lambda reason: None, signals=(), exit_after=PARENT_GRACE, parent=parent)
    watch.start()
    _serve(sys.stdin.buffer, stdout)
    watch.stop()
