"""Liveness and readiness endpoints (aiohttp) on ``--health-port``.

* ``/healthz``: 200 while the event loop answers and, on the leader, kopf has not stopped.
* ``/readyz``: 200 on a standby replica that is campaigning, and on the leader once kopf has
  started (startup handlers done, watches starting; kopf holds handlers back until its indexes
  are filled).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

logger = logging.getLogger("finetune_operator.health")


class HealthServer:
    def __init__(self, port: int, alive: Callable[[], bool], ready: Callable[[], bool]):
        self.port = port
        self.alive = alive
        self.ready = ready
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self.alive()
        return web.Response(status=200 if ok else 500, text="ok\n" if ok else "unhealthy\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        ok = self.ready()
        return web.Response(status=200 if ok else 503, text="ready\n" if ok else "not ready\n")

    async def start(self) -> None:
        if not self.port:
            return
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self.port).start()
        logger.info("health endpoints on :%d (/healthz, /readyz)", self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
