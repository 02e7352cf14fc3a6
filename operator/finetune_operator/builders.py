"""Pure builders: a FineTuneJob (dict as stored) -> the objects that run it.

No I/O and no kopf here: every function takes plain dicts / pydantic models and returns plain
dicts, so the unit tests cover exactly what is sent to the API server.

Children of a FineTuneJob ``<name>`` (all named deterministically, <= 63 characters, labelled
``finetune.dev/finetunejob=<name>`` and owned by the FineTuneJob):

* ConfigMap ``<name>-config`` with ``config.json`` (the ``TrainerConfig``),
* ServiceAccount and RoleBinding ``<name>-trainer``: the binding grants the trainer the chart's
  fixed trainer ClusterRole (``patch`` on ``finetunejobs/status``; the chart's admission policy
  narrows that to ``status.progress`` of its own FineTuneJob). The operator never creates Roles.
* Job ``<name>-trainer`` running ``finetune-train --config /etc/finetune/config.json``; with
  ``resources.nodes`` M above 1 an Indexed Job of M pods, one per node, and the headless Service
  ``<name>-trainer`` that gives pod ``i`` its stable name ``<name>-trainer-i.<name>-trainer``
  (node 0's hosts the rendezvous, ``finetune_api.distributed``).

Names are ``<name>-<suffix>`` (FineTuneJob names are at most 52 characters). The operator never
adopts an existing object of one of these names that it did not create: that is a NameConflict.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from finetune_api import API_VERSION, GROUP, KIND, contract, distributed
from finetune_api.contract import GPU_MEMORY_ENV
from finetune_api.names import MAX_NAME_LENGTH, NAME_LENGTH_MESSAGE
from finetune_api.protocol import NOT_RETRIED_EXIT_CODES, ExitCode
from finetune_api.resource import FineTuneJobSpec
from finetune_api.runconfig import (
    MODEL_CACHE_ENV,
    MODEL_CACHE_MOUNT,
    TERMINATION_MESSAGE_PATH,
    fetch_plans,
    output_dir,
    parse_pvc_source,
    pvc_mount_path,
    trainer_config,
)

from .config import OperatorConfig

# --- names and labels -------------------------------------------------------------------------

LABEL_JOB = f"{GROUP}/finetunejob"
ANNOTATION_JOB = contract.JOB_NAME_ANNOTATION  # the FineTuneJob name, read by the trainer (downward API)
LABEL_COMPONENT = "app.kubernetes.io/component"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MANAGED_BY = "finetune-operator"
CONTAINER_NAME = "trainer"
CONFIG_DIR = "/etc/finetune"
CONFIG_FILE = "config.json"
CONFIG_PATH = contract.CONFIG_PATH
TRAINER_COMMAND = list(contract.COMMANDS[0])
TMP_DIR = "/tmp"
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


def service_name(name: str) -> str:
    """The headless Service of a run over several nodes (its pods' ``subdomain``)."""
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


def trainer_pod_selector(name: str) -> dict[str, str]:
    """The labels of this run's trainer pods, and of no other pod of the operator's."""
    return {**selector_labels(name), LABEL_COMPONENT: "trainer"}


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


def child_metadata(ftj: dict[str, Any], name: str, component: str = "trainer") -> dict[str, Any]:
    meta = ftj["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": standard_labels(meta["name"], component),
        "annotations": {ANNOTATION_JOB: meta["name"]},
        "ownerReferences": [owner_reference(ftj)],
    }


# --- sources and volumes ----------------------------------------------------------------------


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


class InvalidSpec(ValueError):
    """The stored spec fails the models (it passed the CRD schema somehow): the run fails as InvalidSpec."""


def parse_spec(ftj: dict[str, Any]) -> FineTuneJobSpec:
    """Validate the stored spec (and the name's length); raises InvalidSpec with every problem, field by field."""
    name = (ftj.get("metadata") or {}).get("name") or ""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidSpec(f"invalid spec: {NAME_LENGTH_MESSAGE}; {name!r} has {len(name)}")
    try:
        # strict, as the API server is: "yes" is not a boolean, "2" not an integer
        spec = FineTuneJobSpec.model_validate_json(json.dumps(ftj.get("spec") or {}), strict=True)
    except pydantic.ValidationError as e:
        errors = "; ".join(
            f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" if err["loc"] else err["msg"]
            for err in e.errors()
        )
        raise InvalidSpec(f"invalid spec: {errors}") from e
    return spec


# --- children ---------------------------------------------------------------------------------


def config_map(
    ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig, access_modes: list[str] | None = None
) -> dict[str, Any]:
    """The trainer's config; ``access_modes``: the output claim's, where the operator read them."""
    meta = ftj["metadata"]
    tc = trainer_config(
        spec,
        meta["namespace"],
        meta["name"],
        meta["uid"],
        cfg.status_patch_interval_seconds,
        cached_models(cfg),
        output_access_modes=access_modes,
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(ftj, config_map_name(meta["name"])),
        "immutable": True,
        "data": {CONFIG_FILE: json.dumps(tc.to_wire(), indent=2, sort_keys=True) + "\n"},
    }


def service_account(ftj: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": child_metadata(ftj, service_account_name(ftj["metadata"]["name"])),
        "automountServiceAccountToken": False,  # the Job's pod opts in
    }


def role_binding(ftj: dict[str, Any], cfg: OperatorConfig) -> dict[str, Any]:
    """Binds the trainer's ServiceAccount to the fixed trainer ClusterRole in the FineTuneJob's namespace."""
    meta = ftj["metadata"]
    sa = service_account_name(meta["name"])
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": child_metadata(ftj, sa),
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


def cached_models(cfg: OperatorConfig) -> bool:
    """Whether downloaded models go into the model cache claim (else onto the run's output claim)."""
    return cfg.model_cache_claim is not None


def model_cache_volume(
    spec: FineTuneJobSpec, cfg: OperatorConfig, read_only: bool
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The model cache claim as (volume, mount), when the run fetches a model into it."""
    if not any(plan.in_cache for plan in fetch_plans(spec, cached_models(cfg))):
        return []
    claim = {"claimName": cfg.model_cache_claim, "readOnly": read_only}
    return [
        (
            {"name": "model-cache", "persistentVolumeClaim": claim},
            {"name": "model-cache", "mountPath": MODEL_CACHE_MOUNT, "readOnly": read_only},
        )
    ]


def _volumes(
    ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
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
    for volume, mount in model_cache_volume(spec, cfg, read_only=True):  # trainers never write the cache
        volumes.append(volume)
        mounts.append(mount)
    return volumes, mounts


def _env(
    spec: FineTuneJobSpec, cfg: OperatorConfig, gpu_memory_bytes: int | None, spread: dict[str, str]
) -> list[dict[str, Any]]:
    """The trainer's environment: only names of ``finetune_api.contract`` (the chart's admission
    policy refuses any other variable, and Secret references under other names); ``spread``: the
    variables of a run over several nodes (``nodes_env``)."""
    literal = {
        "HOME": TMP_DIR,
        "HF_HOME": f"{TMP_DIR}/hf",
        "TMPDIR": TMP_DIR,
        "XDG_CACHE_HOME": f"{TMP_DIR}/cache",
        "MPLCONFIGDIR": f"{TMP_DIR}/matplotlib",
        "PYTHONUNBUFFERED": "1",
        "FINETUNE_STATUS_PATCH": "1" if cfg.status_patch else "0",
        "FINETUNE_GPUS": str(spec.resources.gpus),  # the memory plan is a GPU's when the pod has GPUs
    }
    if cfg.model_cache_claim:  # the trainer derives its fetched model's path from it (runconfig)
        literal[MODEL_CACHE_ENV] = cfg.model_cache_claim
    if gpu_memory_bytes and spec.resources.gpus:  # the GPU the memory plan is checked against
        literal[GPU_MEMORY_ENV] = str(gpu_memory_bytes)
    literal.update(spread)
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in literal.items()]
    env += field_env()
    ref = spec.model.token_secret_ref
    if ref is not None:
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def field_env() -> list[dict[str, Any]]:
    """The FineTuneJob's name and namespace and the pod's name, from the downward API."""
    return [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}} for name, path in contract.FIELD_ENV.items()]


def _tolerations(spec: FineTuneJobSpec, cfg: OperatorConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [dict(t) for t in cfg.gpu_tolerations] if spec.resources.gpus > 0 else []
    for t in spec.scheduling.tolerations:
        wire = t.to_wire()
        if wire not in out:
            out.append(wire)
    return out


def _trainer_container(
    spec: FineTuneJobSpec,
    cfg: OperatorConfig,
    mounts: list[dict[str, Any]],
    gpu_memory_bytes: int | None,
    spread: dict[str, str],
) -> dict[str, Any]:
    res = spec.resources
    requests: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, str] = {"memory": res.memory}
    if res.gpus > 0:
        requests["nvidia.com/gpu"] = str(res.gpus)
        limits["nvidia.com/gpu"] = str(res.gpus)
    return {
        "name": CONTAINER_NAME,
        "image": spec.image or cfg.trainer_image,
        "imagePullPolicy": cfg.image_pull_policy,
        "command": list(TRAINER_COMMAND),
        "workingDir": TMP_DIR,
        "env": _env(spec, cfg, gpu_memory_bytes, spread),
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": mounts,
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def _placement(name: str, spec: FineTuneJobSpec, cfg: OperatorConfig) -> dict[str, Any]:
    """The pod's nodeSelector, tolerations, affinity and priority class (only those it has)."""
    node_selector = dict(spec.scheduling.node_selector)
    if spec.resources.gpu_product:
        node_selector["nvidia.com/gpu.product"] = spec.resources.gpu_product
    affinity = spec.scheduling.affinity.to_wire() if spec.scheduling.affinity else {}
    if spec.resources.nodes > 1:  # the spec's rules leave podAntiAffinity to the operator here
        affinity["podAntiAffinity"] = one_pod_per_node(name)
    placement = {
        "nodeSelector": node_selector,
        "tolerations": _tolerations(spec, cfg),
        "affinity": affinity,
        "priorityClassName": spec.scheduling.priority_class_name,
    }
    return {key: value for key, value in placement.items() if value}


def one_pod_per_node(name: str) -> dict[str, Any]:
    """Required pod anti-affinity: no two trainer pods of this run on one node (a node's GPUs are
    one pod's ``nproc-per-node`` processes; two pods there would be two nodes' worth on one)."""
    term = {"labelSelector": {"matchLabels": trainer_pod_selector(name)}, "topologyKey": "kubernetes.io/hostname"}
    return {"requiredDuringSchedulingIgnoredDuringExecution": [term]}


def nodes_env(ftj: dict[str, Any], spec: FineTuneJobSpec) -> dict[str, str]:
    """The ``finetune_api.distributed`` variables of a run over several nodes (none on one node):
    the node rank comes from the Indexed Job's ``JOB_COMPLETION_INDEX``, node 0 hosts the rendezvous
    at its stable name under the headless Service."""
    if spec.resources.nodes == 1:
        return {}
    meta = ftj["metadata"]
    endpoint = distributed.rendezvous_endpoint(job_name(meta["name"]), service_name(meta["name"]))
    return distributed.node_env(spec.resources.nodes, endpoint, meta["uid"], spec.resources.rendezvous_timeout_seconds)


def job(
    ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig, gpu_memory_bytes: int | None = None
) -> dict[str, Any]:
    """The batch/v1 Job running the trainer (restricted-PSS compliant). ``gpu_memory_bytes``: one GPU's
    memory on every node the pod may land on (their nvidia.com/gpu.memory labels), when known: the
    trainer checks its memory plan against it before any weight loads."""
    name = ftj["metadata"]["name"]
    volumes, mounts = _volumes(ftj, spec, cfg)
    pod_labels = {**spec.pod_labels, **standard_labels(name)}
    pod_annotations = {**spec.pod_annotations, ANNOTATION_JOB: name}
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": restricted_pod_security_context(),
        "automountServiceAccountToken": True,  # the trainer reads its FineTuneJob with it (and reports progress)
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 60,
        "containers": [_trainer_container(spec, cfg, mounts, gpu_memory_bytes, nodes_env(ftj, spec))],
        "volumes": volumes,
        "serviceAccountName": service_account_name(name),
        **_placement(name, spec, cfg),
    }

    job_meta = child_metadata(ftj, job_name(name))
    if spec.scheduling.queue_name:
        job_meta["labels"][KUEUE_QUEUE_LABEL] = spec.scheduling.queue_name
    nodes = spec.resources.nodes
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": pod_failure_policy(nodes),
        "completions": nodes,
        "parallelism": nodes,
        "suspend": bool(spec.suspend or spec.scheduling.queue_name),
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    }
    if nodes > 1:  # pod i is <job>-i (the Job controller's hostname), <job>-i.<service> in DNS
        job_spec["completionMode"] = "Indexed"
        pod_spec["subdomain"] = service_name(name)
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    # No ttlSecondsAfterFinished here: the operator sets spec.ttlSecondsAfterFinished on the Job only
    # once the run's result is recorded in the FineTuneJob's status (a TTL of 0 would otherwise
    # delete the pod, and its termination message with the metrics, before the operator reads it).
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": job_meta, "spec": job_spec}


def pod_failure_policy(nodes: int = 1) -> dict[str, Any]:
    """Retries (``backoffLimit``) only where a retry can help: the trainer's exit codes for bad
    config, bad data, a missing model, CUDA out of memory and an output that is another run's fail
    the Job at once; a pod disrupted by preemption, eviction or a node drain (DisruptionTarget) is
    replaced without counting against the limit (the new pod resumes from the checkpoints).

    Several nodes: a pod that failed only because another pod went away (PEER_LOST) is replaced
    without counting either, so one lost pod costs one retry, not one per node; every pod of the
    new attempt meets at the rendezvous again and resumes from the last checkpoint. When the cause
    uses up ``backoffLimit``, the Job fails and its other pods are stopped: never a half-run."""
    peer_lost = [
        {
            "action": "Ignore",
            "onExitCodes": {"containerName": CONTAINER_NAME, "operator": "In", "values": [int(ExitCode.PEER_LOST)]},
        }
    ]
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": sorted(int(c) for c in NOT_RETRIED_EXIT_CODES),
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            *(peer_lost if nodes > 1 else []),
        ]
    }


def trainer_service(ftj: dict[str, Any]) -> dict[str, Any]:
    """The headless Service of a run over several nodes: DNS names for its own trainer pods only
    (published before they are ready: the rendezvous starts before any readiness), no cluster IP,
    nothing reachable from outside the cluster."""
    name = ftj["metadata"]["name"]
    port = distributed.DEFAULT_RDZV_PORT
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(ftj, service_name(name)),
        "spec": {
            "clusterIP": "None",
            "selector": trainer_pod_selector(name),
            "publishNotReadyAddresses": True,
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


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


def pod_prerequisites(
    ftj: dict[str, Any], spec: FineTuneJobSpec, cfg: OperatorConfig, access_modes: list[str] | None = None
) -> list[dict[str, Any]]:
    """What the trainer pods need before the Job is created: their config, their identity (the
    ServiceAccount and its RoleBinding), with which they check their config against their
    FineTuneJob, and on several nodes the headless Service naming them."""
    objs = [config_map(ftj, spec, cfg, access_modes), service_account(ftj), role_binding(ftj, cfg)]
    return [*objs, trainer_service(ftj)] if spec.resources.nodes > 1 else objs


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
    metadata = child_metadata(ftj, cleanup_job_name(name), component="cleanup")
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
                "metadata": {"labels": dict(metadata["labels"]), "annotations": {ANNOTATION_JOB: name}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": service_account_name(name),  # checks the cleanup against its FineTuneJob
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "securityContext": restricted_pod_security_context(),
                    "containers": [
                        {
                            "name": "cleanup",
                            "image": cfg.trainer_image,
                            "imagePullPolicy": cfg.image_pull_policy,
                            "command": [contract.ENTRYPOINT, "cleanup", "--output", target, "--run-id", meta["uid"]],
                            "env": [{"name": "HOME", "value": TMP_DIR}, *field_env()],
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
                    **user_placement(spec),  # where the run's pods may run: its claim is reachable there
                },
            },
        },
    }


def user_placement(spec: FineTuneJobSpec) -> dict[str, Any]:
    """The FineTuneJob's own node selector, tolerations and affinity (no GPU ones)."""
    out: dict[str, Any] = {}
    if spec.scheduling.node_selector:
        out["nodeSelector"] = dict(spec.scheduling.node_selector)
    if spec.scheduling.tolerations:
        out["tolerations"] = [t.to_wire() for t in spec.scheduling.tolerations]
    if spec.scheduling.affinity:
        out["affinity"] = spec.scheduling.affinity.to_wire()
    return out
