#!/usr/bin/env bash
# `make test`: the end-to-end tests in two lanes (each test its own Airflow stack, simulator and Postgres;
# the drills that leave Airflow alone share one stack in one lane), and beside them, at the lowest CPU
# priority, the tests without Airflow. A simulated day mostly waits on its market clock (about 10% of this
# 2-core machine once its stack is up), so the lanes and the niced tests fit beside one another; the
# niced tests take only the CPU the days leave. Prints both summaries, the slowest tests and the suite's time.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/pytest -p no:cacheprovider)
started=$SECONDS
unit_log=$(mktemp -t openbell-unit-XXXXXX.log)
trap 'rm -f "$unit_log"' EXIT

nice -n 19 "${PYTEST[@]}" -m "not e2e" -n 2 "$@" >"$unit_log" 2>&1 &
unit_pid=$!
"${PYTEST[@]}" -m e2e -n 2 --dist loadgroup --durations=30 "$@"
e2e=$?
wait "$unit_pid"
unit=$?

echo
echo "==================== tests without Airflow (run beside the end-to-end tests) ===================="
cat "$unit_log"
echo "suite: $((SECONDS - started)) s wall (end-to-end exit $e2e, without Airflow exit $unit)"
[ "$e2e" -eq 0 ] && [ "$unit" -eq 0 ]
