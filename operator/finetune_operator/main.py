"""``finetune-operator``: the process. Logging, credentials, metrics, health, leader election, kopf."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

# kopf imports the `kubernetes` client when it is installed (it is, in development virtualenvs),
# only to recognise that library's model objects in kopf.adopt() & co. The operator never uses
# it (its own client is ``kube.py``); keeping it out of the process saves ~10-20 MB of RSS.
# ``setdefault``: a process that imported it already (a test) keeps it.
sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]

# The imports below come after it on purpose (hence `noqa: E402`).
import kopf  # noqa: E402

from . import config as config_mod  # noqa: E402
from . import handlers, metrics  # noqa: E402
from .health import HealthServer  # noqa: E402
from .kube import KubeClient  # noqa: E402
from .leader import LeaderElector  # noqa: E402
from .reconciler import Reconciler  # noqa: E402

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


_CFG: config_mod.OperatorConfig | None = None


@kopf.on.login(registry=handlers.REGISTRY)
def login(**_: Any) -> kopf.ConnectionInfo:
    assert _CFG is not None
    return connection_info(_CFG)


async def run(cfg: config_mod.OperatorConfig) -> int:
    global _CFG
    _CFG = cfg
    info = connection_info(cfg)
    client = KubeClient(info, on_request=lambda method: metrics.API_REQUESTS.labels(method=method).inc())
    metrics.serve(cfg.metrics_port)
    stop = asyncio.Event()
    ready = asyncio.Event()
    state: dict[str, Any] = {"phase": "starting", "lost": False, "kopf_done": False}

    def alive() -> bool:
        return not state["kopf_done"] or stop.is_set()

    def is_ready() -> bool:
        return state["phase"] == "campaigning" or ready.is_set()

    health = HealthServer(cfg.health_port, alive, is_ready)
    await health.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    elector: LeaderElector | None = None
    keeper: asyncio.Task | None = None
    if cfg.leader_election:
        lease_ns = cfg.lease_namespace or info.default_namespace or "default"
        # its own connection pool: renewals never queue behind a burst of reconcile requests
        lease_client = KubeClient(info, limit=2)
        elector = LeaderElector(
            lease_client,
            lease_ns,
            cfg.lease_name,
            cfg.identity,
            lease_duration=cfg.lease_duration_seconds,
            renew_interval=cfg.lease_renew_seconds,
        )
        state["phase"] = "campaigning"
        if not await elector.acquire(stop):
            await health.stop()
            await client.close()
            await lease_client.close()
            return 0
        metrics.LEADER.set(1)

        def lost() -> None:
            state["lost"] = True
            metrics.LEADER.set(0)
            stop.set()
            # never act without the lease: if kopf does not stop promptly, exit hard
            loop.call_later(5.0, os._exit, 1)

        keeper = asyncio.create_task(elector.keep(lost))
    state["phase"] = "leading"
    reconciler = Reconciler(cfg, client)
    started = time.monotonic()
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
            stop_flag=stop,
            ready_flag=ready,
            memo=kopf.Memo(reconciler=reconciler, stop=stop),
        )
    finally:
        state["kopf_done"] = True
        if keeper is not None:
            keeper.cancel()
        if elector is not None:
            if not state["lost"]:
                await elector.release()
            await elector.client.close()
        await health.stop()
        await client.close()
        logger.info("stopped after %.1fs", time.monotonic() - started)
    return 1 if state["lost"] else 0


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


if __name__ == "__main__":
    main()
