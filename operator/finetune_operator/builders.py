"""Pure builders: a FineTuneJob (dict as stored) -> the objects that run it.

No I/O and no kopf here: every function takes plain dicts / pydantic models and returns plain
dicts, so the unit tests cover exactly what is sent to the API server.

Children of a FineTuneJob ``<name>`` (all named deterministically, <= 63 characters, labelled
``finetune.dev/finetunejob=<name>`` and owned by the FineTuneJob):

* ConfigMap ``<name>-config`` with ``config.json`` (the ``TrainerConfig``),
* ServiceAccount and RoleBinding ``<name>-trainer``: the binding grants the trainer the chart's
  fixed trainer ClusterRole (``patch`` on ``finetunejobs/status``; the chart's admission policy
  narrows that to ``status.progress`` of its own FineTuneJob). The operator never creates Roles.
* Job ``<name>-trainer`` running ``finetune-train --config /etc/finetune/config.json``.

Names are ``<name>-<suffix>`` (FineTuneJob names are at most 52 characters). The operator never
adopts an existing object of one of these names that it did not create: that is a NameConflict.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import pydantic

from finetune_api import API_VERSION, GROUP, KIND
from finetune_api.names import MAX_NAME_LENGTH
from finetune_api.resource import FineTuneJobSpec
from finetune_api.training import (
    DatasetSpec,
    EvaluationSpec,
    ModelSpec,
    OutputSpec,
    ReportingSpec,
    TrainerConfig,
)

from .config import OperatorConfig

# --- names and labels -------------------------------------------------------------------------

LABEL_JOB = f"{GROUP}/finetunejob"
ANNOTATION_JOB = f"{GROUP}/finetunejob"  # the full (untruncated) FineTuneJob name
LABEL_COMPONENT = "app.kubernetes.io/component"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MANAGED_BY = "finetune-operator"
CONTAINER_NAME = "trainer"
CONFIG_DIR = "/etc/finetune"
CONFIG_FILE = "config.json"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_FILE}"
TRAINER_COMMAND = ["finetune-train", "--config", CONFIG_PATH]
PVC_MOUNT_ROOT = "/mnt/pvc"
TMP_DIR = "/tmp"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
RUN_AS_USER = 1000


def child_name(name: str, suffix: str) -> str:
    """``<name>-<suffix>``: FineTuneJob names are at most MAX_NAME_LENGTH (52) characters, so every
    child name fits in 63 (a DNS label; a Job's name must fit its pods' ``job-name`` label)."""
    return f"{name}-{suffix}"


def label_value(name: str) -> str:
    """A FineTuneJob name as a label value (fits: names are at most 52 characters)."""
    return name


def job_name(name: str) -> str:
    return child_name(name, "trainer")


def config_map_name(name: str) -> str:
    return child_name(name, "config")


def service_account_name(name: str) -> str:
    return child_name(name, "trainer")


def cleanup_job_name(name: str) -> str:
    return child_name(name, "cleanup")


def selector_labels(name: str) -> dict[str, str]:
    """The labels the operator selects its children by."""
    return {LABEL_JOB: label_value(name)}


def standard_labels(name: str, component: str = "trainer") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "finetunejob",
        "app.kubernetes.io/instance": label_value(name),
        LABEL_COMPONENT: component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "finetune-operator",
        **selector_labels(name),
    }


def owner_reference(ftj: dict[str, Any]) -> dict[str, Any]:
    """A controller owner reference to the FineTuneJob (what ``kopf.adopt`` adds), so the garbage
    collector deletes the children with it."""
    meta = ftj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(ftj: dict[str, Any], name: str, component: str = "trainer") -> dict[str, Any]:
    meta = ftj["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": standard_labels(meta["name"], component),
        "annotations": {ANNOTATION_JOB: meta["name"]},
        "ownerReferences": [owner_reference(ftj)],
    }


# --- sources and volumes ----------------------------------------------------------------------


def parse_pvc_source(source: str) -> tuple[str, str] | None:
    """``pvc://claim/some/path`` -> ``("claim", "some/path")``; None for other schemes."""
    if not source.startswith("pvc://"):
        return None
    rest = source[len("pvc://") :]
    claim, _, path = rest.partition("/")
    return claim, posixpath.normpath(path).lstrip("/") if path.strip("/") else ""


def pvc_mount_path(claim: str) -> str:
    return f"{PVC_MOUNT_ROOT}/{claim}"


def resolve_source(source: str | None) -> str | None:
    """The path the trainer sees for a source: pvc:// becomes a path under the claim's mount."""
    if source is None:
        return None
    parsed = parse_pvc_source(source)
    if parsed is None:
        return source
    claim, path = parsed
    return posixpath.join(pvc_mount_path(claim), path) if path else pvc_mount_path(claim)


def output_subpath(spec: FineTuneJobSpec, namespace: str, name: str) -> str:
    """Directory inside the output claim: ``output.path`` or ``<namespace>/<name>``."""
    return spec.output.path or f"{namespace}/{name}"


def output_dir(spec: FineTuneJobSpec, namespace: str, name: str) -> str:
    return posixpath.join(pvc_mount_path(spec.output.pvc), output_subpath(spec, namespace, name))


def claims(spec: FineTuneJobSpec) -> dict[str, bool]:
    """Every claim the pod mounts -> read-only? Input claims are read-only; the output claim is
    read-write (also when it holds inputs too: one claim is mounted once)."""
    out: dict[str, bool] = {}
    for source in spec.input_sources().values():
        parsed = parse_pvc_source(source)
        if parsed:
            out.setdefault(parsed[0], True)
    out[spec.output.pvc] = False
    return out


# --- the trainer config -----------------------------------------------------------------------


def trainer_config(
    spec: FineTuneJobSpec, namespace: str, name: str, uid: str, status_patch_interval_seconds: float = 10.0
) -> TrainerConfig:
    """The TrainerConfig for a FineTuneJob: the training part of the spec, sources resolved to paths,
    the output directory owned by this run (the FineTuneJob's uid)."""
    model = ModelSpec.model_validate(
        {
            **spec.model.model_dump(),
            "source": resolve_source(spec.model.source),
            "adapter": resolve_source(spec.model.adapter),
        }
    )
    dataset = DatasetSpec.model_validate(
        {
            **spec.dataset.model_dump(),
            "source": resolve_source(spec.dataset.source),
            "validation_source": resolve_source(spec.dataset.validation_source),
        }
    )
    evaluation = EvaluationSpec.model_validate(
        {
            **spec.evaluation.model_dump(),
            "general_source": resolve_source(spec.evaluation.general_source),
        }
    )
    return TrainerConfig(
        method=spec.method,
        model=model,
        dataset=dataset,
        peft=spec.peft,
        training=spec.training,
        evaluation=evaluation,
        output=OutputSpec(
            dir=output_dir(spec, namespace, name),
            merge=spec.output.merge,
            run_id=uid,
            owner=f"{namespace}/{name}",
            replace=spec.output.replace,
        ),
        reporting=ReportingSpec(
            termination_message_path=TERMINATION_MESSAGE_PATH,
            status_patch_interval_seconds=status_patch_interval_seconds,
        ),
    )


class InvalidSpec(ValueError):
    """The stored spec fails the models (it passed the CRD schema somehow): the run fails as InvalidSpec."""


def parse_spec(ftj: dict[str, Any]) -> FineTuneJobSpec:
    """Validate the stored spec (and the name's length); raises InvalidSpec with every problem, field by field."""
    name = (ftj.get("metadata") or {}).get("name") or ""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSpec(
            f"invalid spec: metadata.name must be at most {MAX_NAME_LENGTH} characters "
            f"(the trainer Job is named <name>-trainer); {name!r} has {len(name)}"
        )
    try:
        # strict, as the API server is: "yes" is not a boolean, "2" not an integer
        spec = FineTuneJobSpec.model_validate_json(json.dumps(ftj.get("spec") or {}), strict=True)
    except pydantic.ValidationError as e:
        errors = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" if err["loc"] else err["msg"]
            for err in e.errors()
        )
        raise InvalidSpec(f"invalid spec: {errors}") from e
    if spec.output.path and any(seg in (".", "..") for seg in spec.output.path.split("/")):
        raise InvalidSpec(f"invalid spec: output.path {spec.output.path!r} must not contain '.' or '..' segments")
    return spec


# --- children ---------------------------------------------------------------------------------


def config_map(ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig) -> dict[str, Any]:
    meta = ftj["metadata"]
    tc = trainer_config(spec, meta["namespace"], meta["name"], meta["uid"], cfg.status_patch_interval_seconds)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(ftj, config_map_name(meta["name"])),
        "immutable": True,
        "data": {CONFIG_FILE: json.dumps(tc.to_wire(), indent=2, sort_keys=True) + "\n"},
    }


def service_account(ftj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(ftj, service_account_name(ftj["metadata"]["name"])),
        "automountServiceAccountToken": False,  # the Job's pod opts in
    }


def role_binding(ftj: dict[str, Any], cfg: OperatorConfig) -> dict[str, Any]:
    """Binds the trainer's ServiceAccount to the fixed trainer ClusterRole in the FineTuneJob's namespace."""
    meta = ftj["metadata"]
    sa = service_account_name(meta["name"])
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(ftj, sa),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cfg.trainer_cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": meta["namespace"]}],
    }


def restricted_container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _volumes(ftj: dict[str, Any], spec: FineTuneJobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    name = ftj["metadata"]["name"]
    volumes: list[dict[str, Any]] = [
        {
            "name": "config",
            "configMap": {"name": config_map_name(name), "items": [{"key": CONFIG_FILE, "path": CONFIG_FILE}]},
        },
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.resources.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "tmp", "mountPath": TMP_DIR},
    ]
    for index, (claim, read_only) in enumerate(sorted(claims(spec).items())):
        vol = f"pvc-{index}"
        volumes.append({"name": vol, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": vol, "mountPath": pvc_mount_path(claim), "readOnly": read_only})
    return volumes, mounts


def _env(ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": TMP_DIR},
        {"name": "HF_HOME", "value": f"{TMP_DIR}/hf"},
        {"name": "TMPDIR", "value": TMP_DIR},
        {"name": "XDG_CACHE_HOME", "value": f"{TMP_DIR}/cache"},
        {"name": "MPLCONFIGDIR", "value": f"{TMP_DIR}/matplotlib"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "FINETUNE_STATUS_PATCH", "value": "1" if cfg.status_patch else "0"},
        {
            "name": "FINETUNE_JOB_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{ANNOTATION_JOB}']"}},
        },
        {"name": "FINETUNE_JOB_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "FINETUNE_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    ref = spec.model.token_secret_ref
    if ref is not None:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _tolerations(spec: FineTuneJobSpec, cfg: OperatorConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [dict(t) for t in cfg.gpu_tolerations] if spec.resources.gpus > 0 else []
    for t in spec.scheduling.tolerations:
        wire = t.to_wire()
        if wire not in out:
            out.append(wire)
    return out


def job(ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig) -> dict[str, Any]:
    """The batch/v1 Job running the trainer (restricted-PSS compliant)."""
    meta = ftj["metadata"]
    name = meta["name"]
    res = spec.resources
    requests: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, str] = {"memory": res.memory}
    if res.gpus > 0:
        requests["nvidia.com/gpu"] = str(res.gpus)
        limits["nvidia.com/gpu"] = str(res.gpus)
    node_selector = dict(spec.scheduling.node_selector)
    if res.gpu_product:
        node_selector["nvidia.com/gpu.product"] = res.gpu_product
    volumes, mounts = _volumes(ftj, spec)

    pod_labels = {**spec.pod_labels, **standard_labels(name)}
    pod_annotations = {**spec.pod_annotations, ANNOTATION_JOB: name}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": restricted_pod_security_context(),
        "automountServiceAccountToken": cfg.status_patch,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [
            {
                "name": CONTAINER_NAME,
                "image": spec.image or cfg.trainer_image,
                "imagePullPolicy": cfg.image_pull_policy,
                "command": list(TRAINER_COMMAND),
                "workingDir": TMP_DIR,
                "env": _env(ftj, spec, cfg),
                "resources": {"requests": requests, "limits": limits},
                "volumeMounts": mounts,
                "securityContext": restricted_container_security_context(),
                "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                "terminationMessagePolicy": "FallbackToLogsOnError",
            }
        ],
        "volumes": volumes,
    }
    if cfg.status_patch:
        pod_spec["serviceAccountName"] = service_account_name(name)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = _tolerations(spec, cfg)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.scheduling.affinity:
        pod_spec["affinity"] = spec.scheduling.affinity
    if spec.scheduling.priority_class_name:
        pod_spec["priorityClassName"] = spec.scheduling.priority_class_name

    job_meta = _metadata(ftj, job_name(name))
    if spec.scheduling.queue_name:
        job_meta["labels"][KUEUE_QUEUE_LABEL] = spec.scheduling.queue_name
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "completions": 1,
        "parallelism": 1,
        "suspend": bool(spec.suspend or spec.scheduling.queue_name),
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    # No ttlSecondsAfterFinished here: the operator sets spec.ttlSecondsAfterFinished on the Job only
    # once the run's result is recorded in the FineTuneJob's status (a TTL of 0 would otherwise
    # delete the pod, and its termination message with the metrics, before the operator reads it).
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}


def dry_run_pod(job_manifest: dict[str, Any]) -> dict[str, Any]:
    """The trainer Job's pod, for a server-side dry-run create: admission (Pod Security, PriorityClass,
    LimitRange, validation) answers for the pod now rather than in the Job controller's Events."""
    template = job_manifest["spec"]["template"]
    meta = job_manifest["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{meta['name']}-dry-run",
            "namespace": meta["namespace"],
            "labels": dict(template["metadata"]["labels"]),
            "annotations": dict(template["metadata"]["annotations"]),
        },
        "spec": template["spec"],
    }


def pod_prerequisites(ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig) -> list[dict[str, Any]]:
    """What the trainer pod needs before the Job is created: its config and its ServiceAccount."""
    out = [config_map(ftj, spec, cfg)]
    if cfg.status_patch:
        out.append(service_account(ftj))
    return out


def cleanup_job(ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig) -> dict[str, Any]:
    """A short Job removing what this run wrote to its output directory (``output.retention:
    Delete``): ``finetune-train cleanup`` deletes only the files listed in the directory's run
    record, and only when that record names this run (the FineTuneJob's uid). Always the operator's
    trainer image (a custom ``spec.image`` is not trusted to delete). Owned by the FineTuneJob, which
    keeps the operator's finalizer until the cleanup is done; the garbage collector removes it after."""
    meta = ftj["metadata"]
    name = meta["name"]
    target = output_dir(spec, meta["namespace"], name)
    claim = spec.output.pvc
    metadata = _metadata(ftj, cleanup_job_name(name), component="cleanup")
    metadata["ownerReferences"][0]["blockOwnerDeletion"] = False  # its owner is being deleted
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 300,
            "activeDeadlineSeconds": 600,
            "template": {
                "metadata": {"labels": dict(metadata["labels"])},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security_context(),
                    "containers": [
                        {
                            "name": "cleanup",
                            "image": cfg.trainer_image,
                            "imagePullPolicy": cfg.image_pull_policy,
                            "command": ["finetune-train", "cleanup", "--output", target, "--run-id", meta["uid"]],
                            "env": [{"name": "HOME", "value": TMP_DIR}],
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
                            "securityContext": restricted_container_security_context(),
                            "terminationMessagePath": TERMINATION_MESSAGE_PATH,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": [
                                {"name": "output", "mountPath": pvc_mount_path(claim)},
                                {"name": "tmp", "mountPath": TMP_DIR},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "output", "persistentVolumeClaim": {"claimName": claim}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
