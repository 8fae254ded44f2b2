"""The simulator's ``/sim/...`` routes: who may change faults, and what they accept."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from openbell.sim.testing import SimProcess


def _call(sim: SimProcess, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(sim.base_url + path, data=body, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _keys(sim: SimProcess) -> dict[str, str]:
    return {"APCA-API-KEY-ID": sim.key, "APCA-API-SECRET-KEY": sim.secret}


JSON = {"Content-Type": "application/json"}


def test_post_faults_needs_the_key(closed_sim: SimProcess) -> None:
    body = json.dumps({"rest_error_rate": 1}).encode()
    assert _call(closed_sim, "POST", "/sim/faults", body, JSON)[0] == 401
    wrong = {"APCA-API-KEY-ID": closed_sim.key, "APCA-API-SECRET-KEY": "not-the-secret"}
    assert _call(closed_sim, "POST", "/sim/faults", body, {**JSON, **wrong})[0] == 401
    assert closed_sim.faults()["settings"]["rest_error_rate"] == 0


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_post_faults_needs_a_json_body(closed_sim: SimProcess, content_type: str | None) -> None:
    headers = _keys(closed_sim) | ({"Content-Type": content_type} if content_type else {})
    status, body = _call(closed_sim, "POST", "/sim/faults", json.dumps({"partial_fills": True}).encode(), headers)
    assert status == 415 and "application/json" in str(body["message"])
    assert closed_sim.faults()["settings"]["partial_fills"] is False


def test_post_faults_with_the_key_and_json_applies(closed_sim: SimProcess) -> None:
    headers = _keys(closed_sim) | {"Content-Type": "application/json; charset=utf-8"}
    status, body = _call(closed_sim, "POST", "/sim/faults", json.dumps({"rest_delay_ms": 1}).encode(), headers)
    assert status == 200 and body["settings"]["rest_delay_ms"] == 1  # type: ignore[index]
    assert closed_sim.set_faults(rest_delay_ms=0)["settings"]["rest_delay_ms"] == 0


def test_reading_routes_stay_open(closed_sim: SimProcess) -> None:
    for path in ("/sim/clock", "/sim/health", "/sim/faults"):
        assert _call(closed_sim, "GET", path)[0] == 200, path


@pytest.mark.parametrize("raw", ['{"rest_delay_ms": NaN}', '{"refuse_reconnect_seconds": Infinity}',
                                 '{"rest_error_rate": -Infinity}', '{"reject_symbols": ["../../x"]}',
                                 '{"reject_symbols": ["TOOLONGSYMBOL"]}', '{"rest_delay_ms": 1e400}'])
def test_post_faults_refuses_non_finite_numbers_and_bad_symbols(closed_sim: SimProcess, raw: str) -> None:
    before = closed_sim.faults()["settings"]
    status, _ = _call(closed_sim, "POST", "/sim/faults", raw.encode(), _keys(closed_sim) | JSON)
    assert status == 400
    assert closed_sim.faults()["settings"] == before
