"""The error every caller of a Postgres database may meet, and hiding passwords in what it says.

A leaf (imports nothing of openbell), so the store, the embedded-Postgres tool (:mod:`openbell.pg`) and the
trading core share one :class:`DatabaseUnavailable` and one :func:`redact` without importing each other.
"""

from __future__ import annotations

import re

__all__ = ["DatabaseUnavailable", "redact", "unavailable"]


class DatabaseUnavailable(RuntimeError):
    """Postgres cannot be reached; the message names the URL without its password."""


_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)\S*@")
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#\s]*", re.I)
_DSN_PASSWORD = re.compile(r"(?<![?&\w])(password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S*)", re.I)


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***``, the rest unchanged.

    Covers a URL's user info (up to its last ``@``), ``password=`` query parameters and libpq
    ``key=value`` DSNs (quoted values included), also inside longer text such as error messages.
    """
    text = _URL_PASSWORD.sub(r"\1***@", str(url))
    text = _QUERY_PASSWORD.sub(r"\1***", text)
    return _DSN_PASSWORD.sub(r"\1***", text)


def unavailable(url: str, exc: BaseException) -> DatabaseUnavailable:
    """The error for an unreachable server: the reason's first line, any URL or DSN password in it hidden."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = redact(reason[0]) if reason else type(exc).__name__
    return DatabaseUnavailable(f"cannot connect to Postgres at {redact(url)}: {text}")
