"""Benchmark harness for the activity feed server.

Entry point: ``bench/run`` (which runs ``python -m feedbench`` from ``bench/.venv``).

Layout:

- ``ws``        -- a deliberately small WebSocket client on ``asyncio.Protocol`` (hand-made upgrade,
                   hand-parsed frames) so one process can hold 10k connections.
- ``dialects``  -- what "subscribe", "publish" and "ack" look like for each server under test.
- ``loadgen``   -- the load-generator *process* (subscribers + open-loop publisher), driven by JSON
                   lines on stdin/stdout.
- ``httpload``  -- a raw HTTP/1.1 keep-alive load-generator process.
- ``procs``     -- starting/stopping processes and reading /proc (CPU, RSS).
- ``targets``   -- how each server under test (Redis, raw baseline, ours, peers) is started.
- ``scenarios`` -- the measurements themselves.
- ``report``    -- goals, the printed table and the JSON document.
"""
