"""The operator process: logging, credentials, metrics, health, leader election, kopf.
(``finetune-operator`` starts in ``entry.py``, which runs ``main`` here.)"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import kopf

from . import config as config_mod
from . import handlers, metrics
from .health import HealthServer, Heartbeat
from .kube import KubeClient
from .leader import LeaderElector
from .reconciler import Reconciler

logger = logging.getLogger("finetune_operator")
_STD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the kopf object reference, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = getattr(record, "k8s_ref", None)
        if ref:
            out["object"] = {k: ref.get(k) for k in ("kind", "namespace", "name") if ref.get(k)}
        for k, v in record.__dict__.items():
            if k not in _STD_ATTRS and k not in ("k8s_ref", "k8s_skip", "settings") and not k.startswith("_"):
                try:
                    json.dumps(v)
                    out[k] = v
                except TypeError:
                    out[k] = str(v)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(cfg: config_mod.OperatorConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.log_level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if cfg.log_level != "DEBUG":
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # per-handler chatter


def connection_info(cfg: config_mod.OperatorConfig) -> kopf.ConnectionInfo:
    settings = kopf.OperatorSettings()
    if cfg.kubeconfig:
        os.environ["KUBECONFIG"] = cfg.kubeconfig
        info = kopf.login_with_kubeconfig(settings=settings)
    else:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise SystemExit("no credentials: not in a cluster and no kubeconfig")
    base = os.path.dirname(os.path.abspath(cfg.kubeconfig)) if cfg.kubeconfig else os.getcwd()
    return dataclasses.replace(
        info,
        ca_path=_anchored(info.ca_path, base),
        certificate_path=_anchored(info.certificate_path, base),
        private_key_path=_anchored(info.private_key_path, base),
    )


_KubePath = str | bytes | os.PathLike[str] | os.PathLike[bytes] | None


def _anchored(path: _KubePath, base: str) -> _KubePath:
    """A relative path from a kubeconfig, made absolute against the kubeconfig's folder."""
    if path and not os.path.isabs(os.fspath(path)):
        return os.path.join(base, os.fsdecode(path))
    return path


@kopf.on.login(registry=handlers.REGISTRY)
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf's (re-)authentication, with the settings ``run`` put into the operator's memo."""
    return connection_info(memo.config)


@dataclasses.dataclass
class Process:
    """What the health endpoints report, and the flags that stop the process."""

    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    ready: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    heartbeat: Heartbeat = dataclasses.field(default_factory=Heartbeat)
    phase: str = "starting"  # then campaigning, leading
    lost: bool = False  # the Lease was lost
    kopf_done: bool = False

    def alive(self) -> bool:
        return (not self.kopf_done or self.stop.is_set()) and not self.heartbeat.stale

    def is_ready(self) -> bool:
        return self.phase == "campaigning" or self.ready.is_set()


async def run(cfg: config_mod.OperatorConfig) -> int:
    info = connection_info(cfg)
    client = KubeClient(info, on_request=lambda method: metrics.API_REQUESTS.labels(method=method).inc())
    metrics.serve(cfg.metrics_port)
    proc = Process()
    health = HealthServer(cfg.health_port, proc.alive, proc.is_ready)
    health.start()
    beating = asyncio.create_task(proc.heartbeat.run(proc.stop))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, proc.stop.set)
    started = time.monotonic()
    try:
        if not cfg.leader_election:
            return await operate(cfg, client, proc)
        # its own connection pool: renewals never queue behind a burst of reconcile requests
        elector = LeaderElector(
            KubeClient(info, limit=2),
            cfg.lease_namespace or info.default_namespace or "default",
            cfg.lease_name,
            cfg.identity,
            lease_duration=cfg.lease_duration_seconds,
            renew_interval=cfg.lease_renew_seconds,
        )
        proc.phase = "campaigning"
        if not await elector.acquire(proc.stop):
            await elector.client.close()
            return 0
        async with leading(elector, proc):
            return await operate(cfg, client, proc)
    finally:
        health.stop()
        beating.cancel()
        await client.close()
        logger.info("stopped after %.1fs", time.monotonic() - started)


@contextlib.asynccontextmanager
async def leading(elector: LeaderElector, proc: Process) -> AsyncIterator[None]:
    """Keep the Lease while the body runs; hand it over afterwards (unless it was lost)."""
    metrics.LEADER.set(1)
    loop = asyncio.get_running_loop()

    def lost() -> None:
        proc.lost = True
        metrics.LEADER.set(0)
        proc.stop.set()
        # never act without the lease: if kopf does not stop promptly, exit hard
        loop.call_later(5.0, os._exit, 1)

    keeper = asyncio.create_task(elector.keep(lost))
    try:
        yield
    finally:
        keeper.cancel()
        if not proc.lost:
            await elector.release()
        await elector.client.close()


async def operate(cfg: config_mod.OperatorConfig, client: KubeClient, proc: Process) -> int:
    """Run kopf until the stop flag is set; 1 when the Lease was lost."""
    proc.phase = "leading"
    logger.info(
        "starting kopf",
        extra={"namespaces": list(cfg.namespaces), "clusterwide": cfg.clusterwide, "identity": cfg.identity},
    )
    try:
        await kopf.operator(
            registry=handlers.REGISTRY,
            standalone=True,
            clusterwide=cfg.clusterwide,
            namespaces=list(cfg.namespaces),
            stop_flag=proc.stop,
            ready_flag=proc.ready,
            memo=kopf.Memo(reconciler=Reconciler(cfg, client), stop=proc.stop, config=cfg),
        )
    finally:
        proc.kopf_done = True
    return 1 if proc.lost else 0


def main(argv: Sequence[str] | None = None) -> None:
    cfg = config_mod.from_args(argv)
    setup_logging(cfg)
    profile = os.environ.get("FINETUNE_OPERATOR_PROFILE")  # development: cProfile stats to this file
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        code = profiler.runcall(asyncio.run, run(cfg))
        profiler.dump_stats(profile)
        sys.exit(code)
    sys.exit(asyncio.run(run(cfg)))
