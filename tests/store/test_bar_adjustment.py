"""The bars' recorded price adjustment: migration 0003, the upsert's column and the window replacement."""

from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from test_bars import T0, make_bars

from openbell.store import db
from openbell.store.bars import upsert_bars


def _adjustments(engine: Engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT symbol, adjustment, count(*) FROM bars GROUP BY 1, 2"))
        return {(r[0], r[1]): r[2] for r in rows}


def test_migration_0003_marks_stored_bars_raw_and_goes_back_down(empty_db_url: str) -> None:
    cfg = db._alembic_config()
    engine = db.make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0002")
        with engine.begin() as conn:  # a bar stored before 0003
            conn.execute(text("INSERT INTO bars (symbol, ts, open, high, low, close, volume, source)"
                              " VALUES ('AAPL', :t, 1, 1, 1, 1, 10, 'rest')"), {"t": T0})
        assert db.upgrade(empty_db_url) == db.head_revision()
        assert _adjustments(engine) == {("AAPL", "raw"): 1}
        with pytest.raises(IntegrityError, match="ck_bars_adjustment"), engine.begin() as conn:
            conn.execute(text("UPDATE bars SET adjustment = 'all'"))
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
        with engine.connect() as conn:
            columns = conn.execute(text("SELECT column_name FROM information_schema.columns"
                                        " WHERE table_name = 'bars'")).scalars().all()
        assert "adjustment" not in columns and len(columns) == 11
        assert db.upgrade(empty_db_url) == db.head_revision()
    finally:
        engine.dispose()


def test_the_adjustment_is_recorded_from_the_argument_or_the_frame(engine: Engine) -> None:
    df = make_bars(["AAPL", "SPY"], 10)
    assert upsert_bars(engine, df, source="stream").written == 20
    assert _adjustments(engine) == {("AAPL", "raw"): 10, ("SPY", "raw"): 10}
    assert upsert_bars(engine, df, source="stream", adjustment="split").written == 20  # the column alone changed
    tagged = df[df["symbol"] == "AAPL"].copy()
    tagged.attrs["adjustment"] = "raw"
    assert upsert_bars(engine, tagged, source="stream").written == 10
    assert upsert_bars(engine, tagged, source="stream").written == 0
    assert _adjustments(engine) == {("AAPL", "raw"): 10, ("SPY", "split"): 10}
    for bad in ({"adjustment": "all"}, {"adjustment": "dividend"}):
        with pytest.raises(ValueError, match="adjustment must be one of raw, split"):
            upsert_bars(engine, df, source="rest", **bad)


def test_replace_makes_the_window_exactly_the_frame_for_the_frames_symbols(engine: Engine) -> None:
    upsert_bars(engine, make_bars(["AAPL", "SPY"], 60), source="stream")
    fresh = make_bars(["AAPL"], 60)
    fresh = fresh.drop(index=[10, 11, 50]).reset_index(drop=True)  # minutes the venue no longer serves
    result = upsert_bars(engine, fresh, source="rest", adjustment="split",
                         replace=(T0, T0 + timedelta(minutes=40)))
    assert (result.written, result.deleted) == (57, 2)  # minute 50 is outside the window: kept
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM bars WHERE symbol = 'AAPL'")).scalar_one()
        spy = conn.execute(text("SELECT count(*) FROM bars WHERE symbol = 'SPY'")).scalar_one()
    assert (kept, spy) == (58, 60)  # a symbol absent from the frame is left alone
    assert result.as_dict()["deleted"] == 2
    with pytest.raises(ValueError, match="timezone-aware"):
        upsert_bars(engine, fresh, source="rest", replace=(T0.replace(tzinfo=None), T0))
