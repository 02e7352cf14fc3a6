"""The health endpoints answer from their own thread: a busy event loop is not a dead operator;
only a loop stuck past the heartbeat's limit fails liveness."""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request

from finetune_devcluster.controlplane import free_port
from finetune_operator.health import HealthServer, Heartbeat


def get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_liveness_fails_only_when_the_loop_stopped_ticking():
    now = [1000.0]
    beat = Heartbeat(stuck_after=60, clock=lambda: now[0])
    ready = threading.Event()
    server = HealthServer(free_port(), lambda: not beat.stale, ready.is_set)
    server.start()
    try:
        assert get(server.port, "/healthz") == 200 and get(server.port, "/readyz") == 503
        ready.set()
        now[0] += 59  # a slow loop
        assert get(server.port, "/healthz") == 200 and get(server.port, "/readyz") == 200
        now[0] += 2  # no tick for 61 s: stuck
        assert get(server.port, "/healthz") == 500
        beat.tick()
        assert get(server.port, "/healthz") == 200
        assert get(server.port, "/nope") == 404
    finally:
        server.stop()


def test_the_endpoints_answer_while_the_event_loop_is_blocked():
    """A burst of work holding the event loop (here: a call that blocks it) does not make a probe
    time out: the endpoints live in their own thread."""
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    blocked, release = threading.Event(), threading.Event()

    def block() -> None:
        blocked.set()
        release.wait(30)

    loop.call_soon_threadsafe(block)
    assert blocked.wait(10)
    server = HealthServer(free_port(), lambda: True, lambda: True)
    server.start()
    try:
        assert get(server.port, "/healthz") == 200
    finally:
        release.set()
        server.stop()
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(10)
        loop.close()


def test_the_heartbeat_ticks_while_the_loop_runs():
    now = [0.0]
    beat = Heartbeat(stuck_after=5, clock=lambda: now[0])

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(beat.run(stop))
        await asyncio.sleep(0)
        now[0] = 100.0  # time passes: stale until the running loop ticks again
        assert beat.stale
        async with asyncio.timeout(10):
            while beat.stale:
                await asyncio.sleep(0.05)
        assert beat.last == 100.0
        stop.set()
        await task

    asyncio.run(run())
