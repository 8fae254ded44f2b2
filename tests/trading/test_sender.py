"""Order workers against a real simulator: outcomes, a worker killed mid-order, no secret in argv."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from dates import SESSION
from openbell.adapters.alpaca.broker import AlpacaBroker
from openbell.broker import client_order_id
from openbell.calendar import ET
from openbell.clock import cached_wall_at, clock_for
from openbell.cpu import SHORT_SLICE_NS, short_slice, thread_slice
from openbell.ports import Deadline
from openbell.sim.testing import SimProcess
from openbell.trading.sender import OrderJob, OrderSender, Sent

CUT_OFF = datetime(2025, 11, 20, 9, 58, tzinfo=ET)  # the simulator's market starts at 10:00


class Outcomes:
    """Every ``Sent`` reported, and a way to wait for a number of them."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self._cond = threading.Condition()

    def __call__(self, sent: Sent) -> None:
        with self._cond:
            self.sent.append(sent)
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 20.0) -> list[Sent]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.sent) >= n, timeout), f"{len(self.sent)} of {n} outcomes"
            return list(self.sent)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"


def _pids(sender: OrderSender) -> list[int]:
    return [w.proc.pid for w in sender._workers]


def test_orders_go_out_through_worker_processes_and_come_back_with_the_brokers_answer(tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=1, start="10:00", data_dir=tmp_path / "sim") as sim:
        config = sim.config()
        clock = clock_for(config)
        clock.refresh()  # the simulator's market time, as the live loop reads it
        outcomes = Outcomes()
        sender = OrderSender(AlpacaBroker(config), outcomes, workers=2, threads=2)
        sender.start()
        pids = _pids(sender)
        try:
            assert len(pids) == 2 and os.getpid() not in pids
            for pid in pids:  # the credentials travel the pipe, never the command line
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                assert config.secret_key.encode() not in cmdline and config.key_id.encode() not in cmdline
            past = Deadline(CUT_OFF, cached_wall_at(clock, CUT_OFF))
            jobs = [
                OrderJob(client_order_id(SESSION, 1, "TQQQ"), "TQQQ", 3, "buy"),
                OrderJob(client_order_id(SESSION, 1, "SSO"), "SSO", 2, "buy"),
                OrderJob(client_order_id(SESSION, 1, "NOPE"), "NOPE", 1, "buy"),  # unknown symbol
                OrderJob(client_order_id(SESSION, 1, "TQQQ"), "TQQQ", 3, "buy"),  # the same id again
                # handed over with its cut-off already passed (a queue behind a 429, say): never POSTed
                OrderJob(client_order_id(SESSION, 1, "TNA"), "TNA", 4, "buy", past),
            ]
            sender.submit_all([(job, i) for i, job in enumerate(jobs)])  # one decision's orders, together
            by_tag = {s.tag: s for s in outcomes.wait(5)}
            assert sorted(w._next for w in sender._workers) == [2, 3]  # spread over both workers
        finally:
            sender.close()

        # the same id twice, on two workers at once: one order, and the other finds it
        assert sorted([by_tag[0].result.outcome, by_tag[3].result.outcome]) == ["existing", "submitted"]
        assert by_tag[0].result.order.broker_order_id == by_tag[3].result.order.broker_order_id  # type: ignore[union-attr]
        assert by_tag[0].result.order.qty == 3  # type: ignore[union-attr]
        assert by_tag[1].result.outcome == "submitted"
        assert by_tag[2].result.outcome == "rejected" and "NOPE" in (by_tag[2].result.reason or "")
        assert by_tag[4].result.outcome == "not_sent" and "cut-off" in (by_tag[4].result.reason or "")
        for s in by_tag.values():
            assert s.sent_at <= s.answered_at
        orders = config.trading_client().get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
        assert sorted(o.client_order_id for o in orders) == sorted(
            {client_order_id(SESSION, 1, "TQQQ"), client_order_id(SESSION, 1, "SSO")})
        for pid in pids:  # close() stops them
            assert not _alive(pid)


def _kernel_takes_short_slices() -> bool:
    took: list[bool] = []
    probe = threading.Thread(target=lambda: took.append(short_slice()))
    probe.start()
    probe.join()
    return took[0]


def test_every_order_worker_thread_runs_on_a_short_time_slice(tmp_path: Path) -> None:
    if not _kernel_takes_short_slices():
        pytest.skip("this kernel has no per-thread time slices (Linux 6.12+)")
    with SimProcess(date="2025-11-20", speed=1, start="10:00", data_dir=tmp_path / "sim") as sim:
        sender = OrderSender(AlpacaBroker(sim.config()), Outcomes(), workers=2, threads=3)
        sender.start()
        try:
            for pid in _pids(sender):
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
                short = [tid for tid in tids if thread_slice(tid) == SHORT_SLICE_NS]
                assert len(short) == 4  # the job reader and three senders (not numpy's own helper threads)
            assert thread_slice() != SHORT_SLICE_NS  # the caller's own thread is left alone
        finally:
            sender.close()


def test_a_killed_worker_reports_its_orders_unknown_and_the_others_carry_on(tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=1, start="10:00", data_dir=tmp_path / "sim",
                    extra_args=["--rest-delay-ms", "300"]) as sim:
        outcomes = Outcomes()
        sender = OrderSender(AlpacaBroker(sim.config()), outcomes, workers=2, threads=1)
        sender.start()
        try:
            first, second = _pids(sender)
            slow = OrderJob(client_order_id(SESSION, 1, "TQQQ"), "TQQQ", 1, "buy")
            sender.submit(slow, tag="in flight")  # the first worker takes it and waits 300 ms for the answer
            time.sleep(0.1)
            os.kill(first, signal.SIGKILL)
            lost = outcomes.wait(1)[0]
            assert (lost.tag, lost.result.outcome) == ("in flight", "unknown")
            assert lost.result.reason == "order worker exited"
            assert lost.sent_at != lost.sent_at  # NaN: no instant was reported for it

            sender.submit(OrderJob(client_order_id(SESSION, 2, "SSO"), "SSO", 1, "buy"), tag="next")
            after = outcomes.wait(2)[1]
            assert (after.tag, after.result.outcome) == ("next", "submitted")

            os.kill(second, signal.SIGKILL)  # no worker left: a new one is started for the next order
            while any(w.alive for w in sender._workers):
                time.sleep(0.01)
            sender.submit(OrderJob(client_order_id(SESSION, 3, "TNA"), "TNA", 1, "buy"), tag="respawned")
            last = outcomes.wait(3)[2]
            assert (last.tag, last.result.outcome) == ("respawned", "submitted")
            assert len(sender._workers) == 3 and _alive(sender._workers[2].proc.pid)
        finally:
            sender.close()


def test_one_worker_given_the_same_id_twice_answers_both(tmp_path: Path) -> None:
    with SimProcess(date="2025-11-20", speed=1, start="10:00", data_dir=tmp_path / "sim") as sim:
        outcomes = Outcomes()
        sender = OrderSender(AlpacaBroker(sim.config()), outcomes, workers=1, threads=2)
        sender.start()
        try:
            job = OrderJob(client_order_id(SESSION, 1, "TNA"), "TNA", 1, "buy")
            sender.submit(job, tag="a")
            sender.submit(job, tag="b")
            sent = outcomes.wait(2)
            assert sorted(s.result.outcome for s in sent) == ["existing", "submitted"]
            assert sender._workers[0].alive
        finally:
            sender.close()
