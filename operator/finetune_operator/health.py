"""Liveness and readiness endpoints on ``--health-port``, served from their own thread.

The endpoints answer from a thread of their own, so a probe is answered at once even while the
event loop is busy with a burst of work on a CPU-starved node. Liveness means "not stuck": the
event loop ticks a heartbeat every second, and ``/healthz`` fails only when that heartbeat is older
than ``stuck_after`` seconds (the loop is blocked), or when kopf stopped on the leader.

* ``/healthz``: 200 while the event loop ticks and, on the leader, kopf has not stopped.
* ``/readyz``: 200 on a standby replica that is campaigning, and on the leader once kopf has
  started (startup handlers done, watches starting; kopf holds handlers back until its indexes
  are filled).
"""

from __future__ import annotations

import asyncio
import http.server
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("finetune_operator.health")
HEARTBEAT_SECONDS = 1.0
STUCK_AFTER_SECONDS = 60.0


class Heartbeat:
    """Ticked by the event loop; ``stale`` when the loop has not run it for ``stuck_after`` seconds."""

    def __init__(self, stuck_after: float = STUCK_AFTER_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.stuck_after = stuck_after
        self.clock = clock
        self.last = clock()

    def tick(self) -> None:
        self.last = self.clock()

    @property
    def stale(self) -> bool:
        return self.clock() - self.last > self.stuck_after

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.tick()
            try:
                await asyncio.wait_for(stop.wait(), HEARTBEAT_SECONDS)
            except TimeoutError:
                pass


class HealthServer:
    def __init__(self, port: int, alive: Callable[[], bool], ready: Callable[[], bool]):
        self.port = port
        self.alive = alive
        self.ready = ready
        self._server: http.server.ThreadingHTTPServer | None = None

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        checks = {"/healthz": (self.alive, 500, "ok", "unhealthy"), "/readyz": (self.ready, 503, "ready", "not ready")}

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                check = checks.get(self.path)
                if check is None:
                    self.send_error(404)
                    return
                probe, failure_code, good, bad = check
                ok = probe()
                body = f"{good if ok else bad}\n".encode()
                self.send_response(200 if ok else failure_code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the http.server API
                return

        return Handler

    def start(self) -> None:
        if not self.port:
            return
        self._server = http.server.ThreadingHTTPServer(("0.0.0.0", self.port), self._handler())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="health", daemon=True).start()
        logger.info("health endpoints on :%d (/healthz, /readyz)", self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
