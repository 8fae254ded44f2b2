"""Airflow's REST API as openbell's drills and commands use it: the admin user's token, runs, task
instances, connections and the DAG's schedule."""

from __future__ import annotations

import copy
import time
from typing import Any, Self
from urllib.parse import quote

import requests

from openbell.accounts import DAY_DAG
from openbell.adapters.alpaca.config import AlpacaConfig

ADMIN = "admin"


class AirflowApi:
    """A client of one api-server (``api_url``) as the admin user (``admin_password``), about one DAG
    (:attr:`dag_id`)."""

    alpaca: AlpacaConfig | None = None
    dag_id: str = DAY_DAG  # the DAG the run, task and schedule calls are about
    _token: str | None = None

    def for_dag(self, dag_id: str) -> Self:
        """This client, its calls about ``dag_id`` (an account's ``trading_day_<name>``)."""
        view = copy.copy(self)
        view.dag_id = dag_id
        return view

    @property
    def api_url(self) -> str:
        raise NotImplementedError

    @property
    def admin_password(self) -> str:
        raise NotImplementedError

    def check_alive(self) -> None:
        """Raise if the processes behind the API have exited (nothing to check for a bare client)."""

    def token(self) -> str:
        """A JWT for the admin user from the simple auth manager."""
        if self._token is None:
            resp = requests.post(
                f"{self.api_url}/auth/token", json={"username": ADMIN, "password": self.admin_password}, timeout=10
            )
            if resp.status_code >= 300:
                raise RuntimeError(f"login to Airflow failed: HTTP {resp.status_code}")
            self._token = str(resp.json()["access_token"])
        return self._token

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """An authenticated call to Airflow's REST API; returns the decoded JSON."""
        resp = requests.request(
            method, f"{self.api_url}{path}", headers={"Authorization": f"Bearer {self.token()}"}, timeout=30, **kw
        )
        if resp.status_code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def import_errors(self) -> list[dict[str, Any]]:
        try:
            return list(self.get("/api/v2/importErrors").get("import_errors", []))
        except (requests.RequestException, RuntimeError) as exc:
            return [{"error": str(exc)}]

    def dag_runs(self) -> list[dict[str, Any]]:
        return list(self.get(f"/api/v2/dags/{self.dag_id}/dagRuns", params={"limit": 100}).get("dag_runs", []))

    def dag_run(self, run_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{self.dag_id}/dagRuns/{quote(run_id, safe='')}"))

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        data = self.get(f"/api/v2/dags/{self.dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances")
        return list(data.get("task_instances", []))

    def unpause(self) -> None:
        """Let the scheduler create and run the DAG's runs, as the UI's toggle does."""
        self.request("PATCH", f"/api/v2/dags/{self.dag_id}", json={"is_paused": False})

    def pause(self) -> None:
        """Stop the scheduler from creating or running the DAG's runs, as the UI's toggle does."""
        self.request("PATCH", f"/api/v2/dags/{self.dag_id}", json={"is_paused": True})

    def delete_runs(self, dag_id: str) -> None:
        """Delete every run of ``dag_id`` with its task instances, as the UI's "Delete" does."""
        for run in self.get(f"/api/v2/dags/{dag_id}/dagRuns", params={"limit": 100}).get("dag_runs", []):
            self.request("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{quote(str(run['dag_run_id']), safe='')}")

    def reparse(self, timeout: float = 60) -> None:
        """Have the dag-processor parse the DAG's file now and wait until the scheduler knows its next run
        again (after :meth:`delete_runs`, the session's run)."""
        details = self.get(f"/api/v2/dags/{self.dag_id}/details")
        self.request("PUT", f"/api/v2/parseDagFile/{details['file_token']}")
        deadline = time.monotonic() + timeout
        while not ((dag := self.get(f"/api/v2/dags/{self.dag_id}")).get("next_dagrun_logical_date")
                   and dag.get("last_parsed_time") != details.get("last_parsed_time")):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the dag-processor did not parse {self.dag_id} again within {timeout:.0f}s")
            self.check_alive()
            time.sleep(0.2)

    def task_instance(self, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.get(f"/api/v2/dags/{self.dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"))

    def task_tries(self, run_id: str, task_id: str) -> list[dict[str, Any]]:
        """Every try of one task in a run (start, end, state), oldest first."""
        data = self.get(f"/api/v2/dags/{self.dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/tries")
        return sorted(data.get("task_instances", []), key=lambda t: int(t.get("try_number") or 0))

    def clear_task(self, run_id: str, task_id: str) -> list[str]:
        """Clear one task of a run, as "Clear" in the UI does; returns the task ids cleared."""
        body = {"dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": False,
                "reset_dag_runs": True}
        data = self.request("POST", f"/api/v2/dags/{self.dag_id}/clearTaskInstances", json=body)
        return [str(ti["task_id"]) for ti in data.get("task_instances", [])]


