"""The ``trading_control`` DAG's step: an operator halts, flattens or resumes one session's trading.

- ``halt``: risk state ``REDUCING`` (no new exposure; what is held is closed by the end-of-day
  liquidation, or by a flatten).
- ``flatten``: risk state ``HALTED``, then the account is liquidated at once with the end-of-day
  liquidation's code (cancel open orders, close every position, prove the account flat a market minute
  later). The session's phase is returned to what it was, so that a ``resume`` may trade again.
- ``resume``: risk state ``ACTIVE``. The daily loss limit still counts from the session's open equity: a
  resume grants no fresh limit. A session the loss stop stopped (risk cause ``loss_stop``) is resumed only
  with ``extra_loss_budget``: the dollars of further loss accepted today on top of the daily loss limit,
  cumulative over the day's resumes and bounded by the deployment's daily loss ceiling
  (:func:`~openbell.params.deployment_ceilings`) times the open equity, so a day loses at most twice that
  ceiling however often it is resumed. The budget is stored with the risk state, journaled, in the ledger
  and alerted; every trading attempt counts it. A session openbell moved to ``REDUCING`` after the strategy
  failed too many minutes in a row (risk cause ``strategy_failed``) is resumed plainly, as after a halt.

A request is checked before anything changes: an unknown action, an empty reason, a date that is no NYSE
session, a session not in progress by the run's market clock, a plain resume of a session the loss stop
stopped, or a bad extra loss budget (not a number of dollars > 0, given with another action or for a session
the loss stop did not stop, over the bound) is refused (:class:`ControlRefused`). Every accepted action is
recorded in the step ledger (step ``trading_control``) with the Airflow user who triggered the run, journaled
as a ``risk_state`` event (with who set it: ``operator``; a halt or flatten of a session the loss stop
stopped keeps the cause ``loss_stop``), and alerted.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from openbell import calendar
from openbell.accounts import CONTROL_DAG
from openbell.adapters.alpaca.config import AlpacaConfig
from openbell.alerts.notify import Level, alert
from openbell.calendar import ET, Session, et_date
from openbell.clock import clock_for
from openbell.params import NOT_NAN, RiskCeilings, RunParams, deployment_ceilings
from openbell.risk.state import RiskCause, RiskMoveRefused, RiskState, check_move, risk_state
from openbell.store.sessions import RiskRecord, get_risk, set_risk
from openbell.workflow.steps import StepContext, recorded

log = logging.getLogger(__name__)

DAG_ID = CONTROL_DAG  # the default account's; a named account's is trading_control_<name>
STEP = "trading_control"
ALERT_KIND = "trading_control"
ACTIONS = ("halt", "flatten", "resume")
TARGET_STATE = {"halt": RiskState.REDUCING, "flatten": RiskState.HALTED, "resume": RiskState.ACTIVE}
# A flatten waits this long (market time, at most until the close) for the broker to report flat.
FLATTEN_WINDOW = timedelta(minutes=5)
UNKNOWN_USER = "unknown Airflow user"
_REASON_LIMIT = 500


class ControlRefused(ValueError):
    """A control request refused before anything changed; the message says why."""


@dataclass(frozen=True)
class ControlRequest:
    """One operator request: the action, why, who asked, for which session (None: today's by market time)."""

    action: str
    reason: str
    by: str
    session_date: date | None = None
    run_id: str = ""
    attempt: int = 1
    dag_id: str = DAG_ID
    extra_loss_budget: Any = None  # dollars, only to resume after a loss stop (checked by check_request)

    @classmethod
    def from_airflow(cls, context: dict[str, Any]) -> ControlRequest:
        """The request of a ``trading_control`` run: its Params and ``dag_run.triggering_user_name``."""
        dag_run = context["dag_run"]
        params = dict(context.get("params") or {})
        ti = context.get("ti")
        return cls(
            action=params.get("action") or "",
            reason=params.get("reason") or "",
            by=getattr(dag_run, "triggering_user_name", None) or UNKNOWN_USER,
            session_date=parse_session_date(params.get("session_date")),
            run_id=str(dag_run.run_id),
            attempt=int(getattr(ti, "try_number", 1) or 1),
            dag_id=str(getattr(dag_run, "dag_id", DAG_ID) or DAG_ID),
            extra_loss_budget=params.get("extra_loss_budget"),
        )


def parse_session_date(value: Any) -> date | None:
    """A session date Param (``YYYY-MM-DD``, a date, or empty for today's); refused when unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ControlRefused(f"session_date {value!r} is not a date (YYYY-MM-DD)") from None


def control_params() -> dict[str, Any]:
    """The DAG's Params: ``action`` and ``reason`` required, ``session_date`` and ``extra_loss_budget``
    optional."""
    from airflow.sdk import Param

    return {
        "action": Param(
            type="string", enum=list(ACTIONS), title="Action",
            description="halt: no new exposure (only orders that reduce a position); flatten: close everything "
                        "now and trade no more; resume: trade normally again.",
        ),
        "reason": Param(type="string", minLength=1, maxLength=_REASON_LIMIT, pattern=r"\S", title="Reason",
                        description="Why: recorded in the ledger and the journal, and sent with the alert."),
        "session_date": Param(None, type=["null", "string"], format="date", title="Session date",
                              description="The NYSE session (YYYY-MM-DD); empty: today's session in New York "
                                          "(the market clock's today)."),
        "extra_loss_budget": Param(
            None, type=["null", "number"], exclusiveMinimum=0, **NOT_NAN, title="Extra loss budget ($)",
            description="Only to resume a session the daily loss stop stopped (required then): the dollars of "
                        "further loss you accept today on top of the daily loss limit, which still counts from "
                        "the open. Cumulative over the day's resumes, at most the deployment's daily loss "
                        "ceiling times the open equity. Empty otherwise.",
        ),
    }


def check_request(request: ControlRequest) -> ControlRequest:
    """The request with its reason and user trimmed; refuses an unknown action or an empty reason."""
    if request.action not in ACTIONS:
        raise ControlRefused(f"unknown action {request.action!r}; use one of {', '.join(ACTIONS)}")
    reason = request.reason.strip() if isinstance(request.reason, str) else ""
    if not reason:
        raise ControlRefused(f"{request.action} refused: a reason is required")
    if len(reason) > _REASON_LIMIT:
        raise ControlRefused(f"{request.action} refused: the reason is longer than {_REASON_LIMIT} characters")
    budget = request.extra_loss_budget
    if budget is not None:
        if request.action != "resume":
            raise ControlRefused(f"{request.action} refused: extra_loss_budget is only for a resume after a loss stop")
        if not (isinstance(budget, int | float) and not isinstance(budget, bool) and math.isfinite(budget)
                and budget > 0):
            raise ControlRefused(f"resume refused: extra_loss_budget must be a number of dollars > 0, got {budget!r}")
        budget = float(budget)
    return replace(request, reason=reason, by=(request.by or "").strip() or UNKNOWN_USER, extra_loss_budget=budget)


def target_session(request: ControlRequest, now: datetime) -> Session:
    """The session the request acts on; refused unless it is an NYSE session in progress at market time
    ``now`` (open <= now < close)."""
    day = request.session_date or et_date(now)
    try:
        s = calendar.session(day)
    except ValueError as exc:
        raise ControlRefused(f"{request.action} refused: {exc}") from None
    at = f"market time {now.astimezone(ET):%Y-%m-%d %H:%M} ET"
    if s is None:
        raise ControlRefused(f"{request.action} refused: {day} is not an NYSE session")
    if now < s.open:
        raise ControlRefused(f"{request.action} refused: session {s} has not started ({at})")
    if now >= s.close:
        raise ControlRefused(f"{request.action} refused: session {s} is over ({at})")
    return s


def trading_control(context: dict[str, Any]) -> dict[str, Any]:
    """The Airflow task: the run's request on its DAG's account (``alpaca_default`` and the ``openbell_db``
    connection's schema ``public`` for the default account)."""
    from openbell.workflow.accounts import account_ceilings, account_state_url, run_account
    from openbell.workflow.hooks import AlpacaHook
    from openbell.workflow.steps import state_url

    account = run_account(context)
    hook = AlpacaHook() if account is None else AlpacaHook(account.conn_id)
    return run_control(ControlRequest.from_airflow(context), hook.get_conn, account_state_url(state_url(), account),
                       ceilings=account_ceilings(account))


def run_control(request: ControlRequest, config_factory: Callable[[], AlpacaConfig], state_url: str, *,
                ceilings: RiskCeilings | None = None) -> dict[str, Any]:
    """Check ``request``, then act on its session; returns the ledger summary. ``ceilings``: the deployment's
    (default: :func:`~openbell.params.deployment_ceilings`), which bound an extra loss budget.

    Raises :class:`ControlRefused` (nothing changed) for a bad request, and ``RuntimeError`` when a flatten
    leaves the account not flat (the session stays HALTED; the failure is in the ledger and alerted).
    """
    request = check_request(request)
    config = config_factory()
    now = clock_for(config).now()
    s = target_session(request, now)
    ctx = StepContext(session=s, params=RunParams(), run_id=request.run_id, attempt=request.attempt,
                      run_type="manual", config_factory=lambda: config, state_url=state_url)
    before = get_risk(ctx.engine, s.date)
    try:
        cause = check_move(risk_state(before.state), TARGET_STATE[request.action], RiskCause.OPERATOR,
                           RiskCause(before.cause) if before.cause else None)
    except RiskMoveRefused as exc:
        raise ControlRefused(f"{request.action} refused: session {s.date} is already {before.state} "
                             f"({before.reason!r} by {before.by}); {exc}") from None
    grant = None
    if request.action == "resume":
        grant = extra_loss_grant(request, before, s.date, ceilings or deployment_ceilings())
    with recorded(ctx, STEP) as record:
        record.summary.update(action=request.action, reason=request.reason, by=request.by,
                              market_time=now.isoformat(), risk_before=before.state, risk_cause_before=before.cause)
        record.summary.update(grant or {})
        if request.action == "flatten":
            risk = _flatten(ctx, request, record.summary, before, cause)
        else:
            risk = set_risk(ctx.engine, s.date, TARGET_STATE[request.action], request.reason, request.by, at=now,
                            cause=cause,
                            extra_loss=grant["extra_loss_total"] if grant else None)
            _alert(ctx, request, before, risk, record.summary)
        record.summary["risk"] = risk.as_dict()
    log.info("trading_control %s of session %s by %s: %s -> %s", request.action, s.date, request.by,
             before.state, risk.state)
    return record.summary


def extra_loss_grant(request: ControlRequest, before: RiskRecord, day: date,
                     ceilings: RiskCeilings) -> dict[str, float] | None:
    """The extra loss budget a resume grants (``extra_loss_budget``, ``extra_loss_total`` for the day,
    ``extra_loss_bound``), None for a plain resume; :class:`ControlRefused` for a plain resume of a session
    the loss stop stopped, a budget for one it did not stop, or a day's total over the bound (the deployment's
    daily loss ceiling times the stored open equity)."""
    budget = request.extra_loss_budget
    if not before.loss_stopped:
        if budget is None:
            return None
        by = f" by {before.by} ({before.cause or 'cause unknown'})" if before.state != "ACTIVE" and before.by else ""
        raise ControlRefused(f"resume refused: session {day} is {before.state}{by}: it was not stopped by the loss "
                             "stop; a plain resume needs no extra loss budget (leave extra_loss_budget empty)")
    if before.open_equity is None:
        raise ControlRefused(f"resume refused: no open equity is stored for session {day}, so no extra loss budget "
                             f"can be bounded; the session stays {before.state} (the loss stop: {before.reason!r})")
    ceiling = ceilings.daily_loss_limit
    bound = round(ceiling * before.open_equity, 2)
    why = f"the deployment's daily loss ceiling {ceiling * 100:g}% of the open equity {before.open_equity:.2f}"
    if budget is None:
        raise ControlRefused(
            f"resume refused: session {day} was stopped by the loss stop ({before.state}: {before.reason!r}); a "
            "resume grants no fresh daily limit: trigger resume with extra_loss_budget, the dollars of further loss "
            f"you accept today (at most {max(bound - before.extra_loss, 0.0):.2f}: {why}, "
            f"{before.extra_loss:.2f} granted already)")
    total = round(before.extra_loss + budget, 2)
    if total > bound:
        raise ControlRefused(
            f"resume refused: an extra loss budget of {budget:.2f} would bring session {day}'s extra loss to "
            f"{total:.2f}, over the bound {bound:.2f} ({why}); {before.extra_loss:.2f} granted already")
    return {"extra_loss_budget": budget, "extra_loss_total": total, "extra_loss_bound": bound}


def _flatten(ctx: StepContext, request: ControlRequest, summary: dict[str, Any], before: RiskRecord,
             cause: RiskCause) -> RiskRecord:
    """HALTED first (the live loop sends nothing more), then liquidate and prove flat a market minute later
    (:func:`~openbell.broker.flatten.flatten_and_prove`; each pass waits at most :data:`FLATTEN_WINDOW`, never
    past the close). The session's phase is left alone: the live loop stays up, halted, and trades again on a
    resume."""
    from openbell.broker.flatten import flatten_and_prove, liquidation_incomplete

    d = ctx.session.date
    risk = set_risk(ctx.engine, d, "HALTED", request.reason, request.by, at=ctx.now(), cause=cause)
    result = flatten_and_prove(ctx.broker, ctx.engine, d, ctx.clock, ctx.session.close, market_data=ctx.market_data,
                               mark_phase=False, window=FLATTEN_WINDOW)
    summary.update(first_pass=result.first.as_dict(), liquidation=result.report.as_dict(), flat=result.flat)
    _alert(ctx, request, before, risk, summary)
    if not result.flat:
        liquidation_incomplete(ctx.engine, d, result.report, summary)
    return risk


def _alert(ctx: StepContext, request: ControlRequest, before: RiskRecord, after: RiskRecord,
           summary: dict[str, Any]) -> None:
    """Alert the control action (once per run); a failing channel is logged, never raised."""
    d = ctx.session.date
    lines = [f"{request.by} ran {request.action} on session {d}: risk state {before.state} -> {after.state}.",
             f"Reason: {request.reason}", f"Market time: {summary['market_time']}"]
    level = Level.INFO if request.action == "resume" else Level.WARNING
    title = f"openbell {d}: {request.action} by {request.by}"
    if before.loss_stopped and request.action != "resume":
        lines.append("The session stays stopped by the loss stop: only a resume with an extra loss budget lifts it.")
    if "extra_loss_budget" in summary:
        budget, total, bound = summary["extra_loss_budget"], summary["extra_loss_total"], summary["extra_loss_bound"]
        level = Level.WARNING
        title += f" after the loss stop, extra loss budget {budget:.2f}"
        lines.append(f"Extra loss budget granted: {budget:.2f} (today's total {total:.2f} of at most {bound:.2f}, "
                     f"the deployment's daily loss ceiling times the open equity {before.open_equity:.2f}). The loss "
                     f"stop now trips once the loss since the open passes the run's daily loss limit plus "
                     f"{total:.2f} (at most {bound + total:.2f}).")
    if request.action == "flatten":
        report = summary.get("liquidation") or {}
        if summary.get("flat"):
            lines.append(f"The account is flat ({report.get('close_orders', 0)} close orders, "
                         f"{report.get('orders_cancelled', 0)} orders cancelled).")
        else:
            level = Level.FAILURE
            title += ": NOT flat"
            lines.append(f"The account is NOT flat: positions {report.get('positions_left')}, "
                         f"open orders {report.get('open_orders_left')}.")
    lines.append(f"Run: {request.dag_id} {request.run_id}")
    summary["alert"] = alert(ALERT_KIND, f"{request.dag_id}/{request.run_id}", title, "\n".join(lines),
                             session_date=d, engine=ctx.engine, level=level).value
