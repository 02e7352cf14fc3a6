"""Pure builder of a run's fetch Job ``<name>-fetch``: one container per downloaded source
(``runconfig.fetch_plans``), each running ``finetune-train fetch`` into the directory the trainer
will read, before the trainer Job exists.

* Identity: the run's own ServiceAccount ``<name>-trainer`` with its token: ``finetune-train
  fetch`` reads its FineTuneJob with it and refuses a download the spec does not name
  (``verify.check_fetch``) before it sends any credential.
* Image: the operator's trainer image (never ``spec.image``: a custom image is not trusted with the
  cache or the credentials).
* Destinations: the model cache claim (read-write here, read-only in every trainer) for models
  when the chart names one; the run's output claim (``.finetune-fetch/``) for datasets, and for
  models without a cache claim.
* Credentials: ``model.tokenSecretRef`` as HF_TOKEN for ``hf://`` sources, ``*.credentialsSecretRef``
  as AWS_* for ``s3://`` ones (endpoint and region keys optional); HF_ENDPOINT and the CA bundle
  from the chart (pinned by its admission policy).
* No retries (``backoffLimit: 0``: a cut connection is resumed inside the fetch), removed
  FETCH_TTL_SECONDS after it finished (the status keeps what it fetched).
"""

from __future__ import annotations

from typing import Any

from finetune_api import contract
from finetune_api.resource import FineTuneJobSpec
from finetune_api.runconfig import (
    MODEL_CACHE_ENV,
    TERMINATION_MESSAGE_PATH,
    FetchPlan,
    fetch_plans,
    pvc_mount_path,
)
from finetune_api.training import ObjectStoreSecretRef

from . import builders
from .config import OperatorConfig

FETCH_COMPONENT = "fetch"
FETCH_TTL_SECONDS = 600
CA_DIR = contract.CA_BUNDLE_DIR
FETCH_REQUESTS = {"cpu": "250m", "memory": "512Mi"}
FETCH_LIMITS = {"memory": "2Gi"}  # the dataset is validated record by record, in memory


def fetch_job_name(name: str) -> str:
    return builders.child_name(name, "fetch")


def command(plan: FetchPlan, spec: FineTuneJobSpec) -> list[str]:
    """The contract's fetch command for ``plan``: every flag in its fixed position, "" for none."""
    shape = contract.FETCH_MODEL_COMMAND if plan.kind == "model" else contract.FETCH_DATASET_COMMAND
    values = {
        "--source": plan.source,
        "--into": plan.into,
        "--revision": plan.revision or "",
        "--sha256": plan.sha256 or "",
        "--format": spec.dataset.format.value,
        "--method": spec.method.value,
    }
    return [values[shape[i - 1]] if arg == contract.ANY_ARGUMENT else arg for i, arg in enumerate(shape)]


def _aws_env(ref: ObjectStoreSecretRef) -> list[dict[str, Any]]:
    keys = (
        ("AWS_ACCESS_KEY_ID", ref.access_key_id_key, False),
        ("AWS_SECRET_ACCESS_KEY", ref.secret_access_key_key, False),
        ("AWS_ENDPOINT_URL", ref.endpoint_key, True),  # absent: AWS S3
        ("AWS_REGION", ref.region_key, True),  # absent: us-east-1
    )
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": key, "optional": optional}}}
        for name, key, optional in keys
    ]


def env(plan: FetchPlan, spec: FineTuneJobSpec, cfg: OperatorConfig) -> list[dict[str, Any]]:
    """Only what this source needs: the Hub's token and endpoint, or the object store's credentials."""
    literal = {
        "HOME": builders.TMP_DIR,
        "TMPDIR": builders.TMP_DIR,
        "HF_HOME": f"{builders.TMP_DIR}/hf",
        "XDG_CACHE_HOME": f"{builders.TMP_DIR}/cache",
        "PYTHONUNBUFFERED": "1",
    }
    if cfg.model_cache_claim:
        literal[MODEL_CACHE_ENV] = cfg.model_cache_claim
    if cfg.ca_bundle:
        literal["FINETUNE_CA_BUNDLE"] = f"{CA_DIR}/{cfg.ca_bundle.split('/', 1)[1]}"
    out = [{"name": k, "value": v} for k, v in literal.items()] + builders.field_env()
    if plan.source.startswith("hf://"):
        if cfg.hub_endpoint:
            out.append({"name": "HF_ENDPOINT", "value": cfg.hub_endpoint})
        token = spec.model.token_secret_ref
        if token is not None:
            out.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}})
    if plan.source.startswith("s3://"):
        ref = spec.model.credentials_secret_ref if plan.kind == "model" else spec.dataset.credentials_secret_ref
        if ref is not None:
            out += _aws_env(ref)
    return out


def _volumes(plans: list[FetchPlan], spec: FineTuneJobSpec, cfg: OperatorConfig) -> tuple[list[Any], list[Any]]:
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": builders.TMP_DIR}]
    if any(not plan.in_cache for plan in plans):
        volumes.append({"name": "output", "persistentVolumeClaim": {"claimName": spec.output.pvc}})
        mounts.append({"name": "output", "mountPath": pvc_mount_path(spec.output.pvc)})
    for volume, mount in builders.model_cache_volume(spec, cfg, read_only=False):
        volumes.append(volume)
        mounts.append(mount)
    if cfg.ca_bundle:
        name, key = cfg.ca_bundle.split("/", 1)
        volumes.append({"name": "ca", "configMap": {"name": name, "items": [{"key": key, "path": key}]}})
        mounts.append({"name": "ca", "mountPath": CA_DIR, "readOnly": True})
    return volumes, mounts


def _container(plan: FetchPlan, spec: FineTuneJobSpec, cfg: OperatorConfig, mounts: list[Any]) -> dict[str, Any]:
    return {
        "name": plan.container,
        "image": cfg.trainer_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": command(plan, spec),
        "workingDir": builders.TMP_DIR,
        "env": env(plan, spec, cfg),
        "resources": {"requests": dict(FETCH_REQUESTS), "limits": dict(FETCH_LIMITS)},
        "volumeMounts": mounts,
        "securityContext": builders.restricted_container_security_context(),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def fetch_job(ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig) -> dict[str, Any] | None:
    """The run's fetch Job, or None when every source is on a claim or in the image."""
    plans = fetch_plans(spec, builders.cached_models(cfg))
    if not plans:
        return None
    name = ftj["metadata"]["name"]
    metadata = builders.child_metadata(ftj, fetch_job_name(name), component=FETCH_COMPONENT)
    volumes, mounts = _volumes(plans, spec, cfg)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": builders.service_account_name(name),  # check_fetch reads the FineTuneJob
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": builders.restricted_pod_security_context(),
        "containers": [_container(plan, spec, cfg, mounts) for plan in plans],
        "volumes": volumes,
        **builders.user_placement(spec),  # where the run's pods may run: its claims are reachable there
    }
    template_meta = {
        "labels": dict(metadata["labels"]),
        "annotations": {**spec.pod_annotations, builders.ANNOTATION_JOB: name},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": FETCH_TTL_SECONDS,
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    }
