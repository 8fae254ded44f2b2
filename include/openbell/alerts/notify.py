"""Send one alert once: the ``openbell_notify`` Apprise connection, deduplicated through the event journal.

An alert is identified by its session, ``kind`` and ``key``. Under a Postgres advisory lock on that
identity, an alert already journaled as ``alert_sent`` is not sent again; a send that failed is journaled
as ``alert_failed`` and may be tried again by a later call. Nothing here ever raises into a step: a
missing connection means no alerts, and a broken channel or database is logged and reported in the
returned :class:`Outcome`.
"""

from __future__ import annotations

import logging
from datetime import date
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import Connection, Engine, func, select, text

from openbell.store.events import record_event

if TYPE_CHECKING:
    import apprise

log = logging.getLogger(__name__)

CONN_ID = "openbell_notify"
EVENT_SENT = "alert_sent"
EVENT_FAILED = "alert_failed"
# First key of the two-key advisory locks on alert identities (a key space apart from single-key locks).
_LOCK_CLASS = 0x6F62
_BODY_LIMIT = 6000


class Level(StrEnum):
    """How an alert is shown (Apprise's notification types)."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


class Outcome(StrEnum):
    """What :func:`alert` did."""

    SENT = "sent"
    DUPLICATE = "duplicate"  # already sent for this session, kind and key
    OFF = "off"  # no ``openbell_notify`` connection: alerts are off
    FAILED = "failed"  # the channel or its configuration failed; logged, never raised


class ChannelError(ValueError):
    """The alert connection exists but cannot be used; the message names it, never its URLs."""


def channel(conn_id: str = CONN_ID) -> apprise.Apprise | None:
    """The Apprise channel of Airflow connection ``conn_id``; None when that connection is not defined.

    Raises :class:`ChannelError` for a connection of another type, without a ``config`` extra of the
    form ``{"path": URL}`` or a list of those, or with an Apprise URL that does not parse.
    """
    import apprise
    from airflow.providers.apprise.hooks.apprise import AppriseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.log import mask_secret

    hook = AppriseHook(apprise_conn_id=conn_id)
    try:
        conn = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None
    if conn.conn_type != AppriseHook.conn_type:
        raise ChannelError(f"connection {conn_id!r} is of type {conn.conn_type!r}, not {AppriseHook.conn_type!r}")
    shape = f'connection {conn_id!r} needs a "config" extra: {{"path": "<Apprise URL>"}} or a list of those'
    try:
        config = hook.get_config_from_conn(conn)
    except (KeyError, ValueError, TypeError):
        raise ChannelError(shape) from None
    entries = config if isinstance(config, list) else [config]
    if not entries or not all(isinstance(e, dict) and isinstance(e.get("path"), str) for e in entries):
        raise ChannelError(shape)
    target = apprise.Apprise()
    for n, entry in enumerate(entries, 1):
        for secret in secret_parts(entry["path"]):
            mask_secret(secret)
        if not target.add(entry["path"], tag=entry.get("tag")):
            raise ChannelError(f"connection {conn_id!r}: Apprise URL {n} of {len(entries)} does not parse")
    return target


def secret_parts(url: str) -> list[str]:
    """What of an Apprise URL may be a secret, for Airflow's log masking: the whole URL, its user,
    password and host (a token in ``tgram://`` and others), each path segment and query value."""
    parts = urlsplit(url)
    found = [url, parts.username, parts.password, parts.hostname, *parts.path.split("/")]
    found += [value for _, value in parse_qsl(parts.query)]
    return [p for p in found if p]


def check_channel(conn_id: str = CONN_ID) -> str:
    """A one-line description of the alert channel, or :class:`ChannelError` if it cannot be used."""
    target = channel(conn_id)
    if target is None:
        return f"alerts off: no Airflow connection {conn_id!r}"
    return f"alerts on: {len(target)} Apprise service(s) in connection {conn_id!r}"


def _send(target: apprise.Apprise, title: str, body: str, level: Level) -> bool:
    try:
        return bool(target.notify(body=body[:_BODY_LIMIT], title=title, notify_type=level.value))
    except Exception as exc:  # a channel's failure is reported, never raised into a step
        log.error("alert %r: the channel failed (%s)", title, type(exc).__name__)
        return False


def _already_sent(conn: Connection, session_date: date, kind: str, key: str) -> bool:
    found = conn.execute(
        text("SELECT 1 FROM events WHERE session_date = :d AND kind = :sent"
             " AND payload->>'kind' = :kind AND payload->>'key' = :key LIMIT 1"),
        {"d": session_date, "sent": EVENT_SENT, "kind": kind, "key": key},
    ).first()
    return found is not None


def alert(
    kind: str,
    key: str,
    title: str,
    body: str,
    *,
    session_date: date,
    engine: Engine | None = None,
    level: Level = Level.FAILURE,
    conn_id: str = CONN_ID,
) -> Outcome:
    """Send the alert ``kind``/``key`` of ``session_date`` once; never raises.

    With ``engine`` (the state database) the alert is sent at most once successfully per session, kind
    and key, however many processes or attempts deliver it, and every send is journaled. Without it, or
    when the database cannot be reached, it is sent without that guarantee: a duplicate is better than
    silence.
    """
    if not kind or not key:
        raise ValueError("an alert needs a kind and a key")
    try:
        target = channel(conn_id)
    except ChannelError as exc:
        log.error("alert %s/%s not sent: %s", kind, key, exc)
        return Outcome.FAILED
    except Exception as exc:
        log.error("alert %s/%s not sent: connection %r unreadable (%s)", kind, key, conn_id, type(exc).__name__)
        return Outcome.FAILED
    if target is None:
        log.debug("alert %s/%s: alerts are off (no connection %r)", kind, key, conn_id)
        return Outcome.OFF
    attempted: list[bool] = []
    if engine is not None:
        try:
            return _once(engine, target, attempted, session_date, kind, key, title, body, level)
        except Exception as exc:
            if attempted:
                log.error("alert %s/%s: sent=%s but not journaled (%s)", kind, key, attempted[0], type(exc).__name__)
                return Outcome.SENT if attempted[0] else Outcome.FAILED
            log.warning("alert %s/%s: state database unavailable (%s); sending without deduplication",
                        kind, key, type(exc).__name__)
    ok = _send(target, title, body, level)
    _log_result(kind, key, ok)
    return Outcome.SENT if ok else Outcome.FAILED


def _once(engine: Engine, target: apprise.Apprise, attempted: list[bool], session_date: date, kind: str,
          key: str, title: str, body: str, level: Level) -> Outcome:
    with engine.begin() as conn:
        conn.execute(select(func.pg_advisory_xact_lock(_LOCK_CLASS, func.hashtext(f"{kind}\x1f{key}"))))
        if _already_sent(conn, session_date, kind, key):
            log.info("alert %s/%s already sent for session %s", kind, key, session_date)
            return Outcome.DUPLICATE
        ok = _send(target, title, body, level)
        attempted.append(ok)
        payload: dict[str, Any] = {"kind": kind, "key": key, "title": title, "level": level.value}
        record_event(conn, session_date, EVENT_SENT if ok else EVENT_FAILED, payload)
    _log_result(kind, key, ok)
    return Outcome.SENT if ok else Outcome.FAILED


def _log_result(kind: str, key: str, ok: bool) -> None:
    if ok:
        log.info("alert %s/%s sent", kind, key)
    else:
        log.error("alert %s/%s: the channel did not accept it", kind, key)
