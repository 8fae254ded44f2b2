"""``openbell db``: manage openbell's state database (the embedded one under :func:`openbell.paths.home_dir`
unless a URL is given)."""

from __future__ import annotations

import argparse
import sys

from openbell.dberrors import DatabaseUnavailable, redact
from openbell.paths import home_dir
from openbell.pg.server import EmbeddedPostgresError
from openbell.pg.urls import resolve_urls


def _state_url(url: str | None) -> str:
    return url or resolve_urls(home_dir())[0]


def main(argv: list[str] | None = None) -> int:
    """``openbell db upgrade [--url URL]`` | ``openbell db url`` | ``openbell db current [--url URL]``."""
    parser = argparse.ArgumentParser(prog="openbell db", description="manage openbell's state database")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="apply the schema migrations up to the newest")
    up.add_argument("--url", help="database URL (default: $OPENBELL_DATABASE_URL or the embedded server)")
    sub.add_parser("url", help="print the state database URL, password hidden")
    cur = sub.add_parser("current", help="print the schema revision and whether it is up to date")
    cur.add_argument("--url", help="database URL (default: $OPENBELL_DATABASE_URL or the embedded server)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    from openbell.store import db

    try:
        if args.command == "url":
            print(redact(_state_url(None)))
            return 0
        url = _state_url(args.url)
        if args.command == "upgrade":
            head = db.upgrade(url)
            print(f"{redact(url)}: schema at {head}")
            return 0
        engine = db.make_engine(url, pool_size=1, max_overflow=0)
        try:
            revision = db.current_revision(engine)
        finally:
            engine.dispose()
        head = db.head_revision()
        state = "up to date" if revision == head else f"out of date (head {head}): run `openbell db upgrade`"
        print(f"{redact(url)}: revision {revision or 'none'}, {state}")
        return 0 if revision == head else 1
    except (DatabaseUnavailable, EmbeddedPostgresError, ValueError) as exc:
        print(f"openbell db: {exc}", file=sys.stderr)
        return 1
