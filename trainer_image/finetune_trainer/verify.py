"""In a cluster the trainer acts only for its own FineTuneJob, as that FineTuneJob asks.

The operator writes the trainer's config into a ConfigMap; an admission policy can check a pod's
image, command and environment but not a ConfigMap's content. So before it reads any data, loads
any model or deletes any file, the trainer reads its FineTuneJob with its pod's token (a status
patch that changes nothing answers with the object; the chart's policies let the token reach its
own FineTuneJob only) and refuses a config that its FineTuneJob's spec does not produce: a stolen
operator token that writes a config of its own (another claim, remote code) gets a trainer that
exits with InvalidConfig instead. Outside a cluster (no FineTuneJob named in the environment)
there is nothing to check.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finetune_api.resource import FineTuneJobSpec, RetentionPolicy
from finetune_api.runconfig import MODEL_CACHE_ENV, fetch_plans, output_dir, trainer_config
from finetune_api.training import TrainerConfig

from .errors import ConfigError
from .progress import ApiTarget

log = logging.getLogger("finetune_trainer")
READ_TIMEOUT_SECONDS = 30.0
TRIES = 3


def own_finetunejob(env: Mapping[str, str] | None = None, sa_dir: Path | None = None) -> dict[str, Any] | None:
    """The FineTuneJob this pod runs for, as the API server has it; None outside a cluster."""
    env = os.environ if env is None else env
    if not env.get("FINETUNE_JOB_NAME"):
        return None
    target = ApiTarget.from_env(env, sa_dir)
    if isinstance(target, str):
        raise ConfigError(f"cannot check the config against the FineTuneJob that runs this pod: {target}")
    error: Exception | None = None
    for _ in range(TRIES):
        try:
            return target.patch(b"{}", READ_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - retried, then reported in one line
            error = exc
    raise ConfigError(f"cannot read FineTuneJob {target.owner} to check the config against it: {error}")


def _spec_of(ftj: dict[str, Any]) -> tuple[FineTuneJobSpec, str, str, str]:
    meta = ftj.get("metadata") or {}
    try:
        spec = FineTuneJobSpec.model_validate(ftj.get("spec") or {})
    except ValueError as exc:
        raise ConfigError(
            f"FineTuneJob {meta.get('namespace')}/{meta.get('name')} has an invalid spec: {exc}"
        ) from None
    return spec, meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", "")


def model_cache(env: Mapping[str, str] | None = None) -> bool:
    """Whether the chart names a model cache claim (the pod's FINETUNE_MODEL_CACHE, pinned by its policy)."""
    env = os.environ if env is None else env
    return bool(env.get(MODEL_CACHE_ENV))


def check_config(config: TrainerConfig, ftj: dict[str, Any], cache: bool | None = None) -> None:
    """Refuse a config that the FineTuneJob's spec does not produce (reporting settings and the claim's
    access modes aside: a forged access mode changes only the replicas in the serving manifests)."""
    spec, namespace, name, uid = _spec_of(ftj)
    cache = model_cache() if cache is None else cache
    expected = trainer_config(spec, namespace, name, uid, config.reporting.status_patch_interval_seconds, cache)
    # the output claim's access modes are what the operator read from the claim, not from the spec
    skip: dict = {"reporting": True, "origin": {"output_access_modes"}}
    want = expected.model_dump(mode="json", exclude=skip)
    have = config.model_dump(mode="json", exclude=skip)
    if want != have:
        raise ConfigError(
            f"the trainer's config does not match FineTuneJob {namespace}/{name} (first difference: "
            f"{_first_difference(want, have)}); refusing to run a config its FineTuneJob did not ask for"
        )
    log.info("config checked against FineTuneJob %s/%s", namespace, name)


def check_cleanup(ftj: dict[str, Any], output: str, run_id: str) -> None:
    """Refuse a cleanup the FineTuneJob did not ask for: it must be this run, being deleted, with
    ``output.retention: Delete``, and the directory must be its output."""
    spec, namespace, name, uid = _spec_of(ftj)
    problems = [
        f"its uid is {uid}, not {run_id}" if uid != run_id else "",
        "it is not being deleted" if not (ftj.get("metadata") or {}).get("deletionTimestamp") else "",
        f"its output.retention is {spec.output.retention.value}"
        if spec.output.retention is not RetentionPolicy.DELETE
        else "",
        f"its output is {output_dir(spec, namespace, name)}, not {output}"
        if output_dir(spec, namespace, name) != output
        else "",
    ]
    said = "; ".join(p for p in problems if p)
    if said:
        raise ConfigError(f"FineTuneJob {namespace}/{name} did not ask to remove {output}: {said}")


def check_fetch(
    ftj: dict[str, Any],
    source: str,
    kind: str,
    revision: str | None,
    sha256: str | None,
    into: str,
    cache: bool | None = None,
) -> None:
    """Refuse a download the FineTuneJob did not ask for, before any credential is sent: its spec must
    name exactly this source, of this kind, at this revision with this sha256, fetched into this
    directory (the Hub it is sent to is pinned by the chart's policy: HF_ENDPOINT)."""
    spec, namespace, name, _uid = _spec_of(ftj)
    cache = model_cache() if cache is None else cache
    asked = (source, kind, revision, sha256, into.rstrip("/") or "/")
    plans = fetch_plans(spec, cache)
    if any((p.source, p.kind, p.revision, p.sha256, p.into) == asked for p in plans):
        return
    wanted = "; ".join(
        f"{p.field}: {p.source} ({p.kind}) at {p.revision} sha256 {p.sha256} into {p.into}" for p in plans
    )
    raise ConfigError(
        f"FineTuneJob {namespace}/{name} did not ask to fetch {source} ({kind}) at {revision} sha256 {sha256} "
        f"into {into} (it asks for: {wanted or 'no download'}); refusing to download it"
    )


def _first_difference(want: Any, have: Any, path: str = "") -> str:
    if isinstance(want, dict) and isinstance(have, dict):
        for key in sorted(set(want) | set(have)):
            if want.get(key) != have.get(key):
                return _first_difference(want.get(key), have.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'config'} is {have!r}, the FineTuneJob gives {want!r}"
