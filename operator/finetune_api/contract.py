"""What the operator may put into the pods it creates and which spec fields name claims and
Secrets: the one table the operator's builders use and the chart's admission policies enforce.

``make crd`` writes it to ``charts/finetune-operator/files/api-contract.yaml`` (a unit test fails
when that copy is stale); the policies read it there, so a trainer pod can only ever carry these
environment variables, this entrypoint and Secret references under these names, whoever creates it
with the operator's token.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import GROUP
from . import distributed as nodes

ENTRYPOINT = "finetune-train"
"""The trainer image's command; its first argument is fixed for every container the operator creates."""
CONFIG_PATH = "/etc/finetune/config.json"
ANY_ARGUMENT = "*"
_ANY = ANY_ARGUMENT
FETCH_MODEL_COMMAND = (ENTRYPOINT, "fetch", "--source", _ANY, "--into", _ANY, "--kind", "model", "--revision", _ANY)
"""Downloading a model (an empty ``--revision``: the default branch)."""
FETCH_DATASET_COMMAND = (
    *(ENTRYPOINT, "fetch", "--source", _ANY, "--into", _ANY, "--kind", "dataset", "--revision", _ANY),
    *("--sha256", _ANY, "--format", _ANY, "--method", _ANY),
)
"""Downloading a dataset and validating its records (an empty ``--sha256``: none given)."""
COMMANDS = (
    (ENTRYPOINT, "--config", CONFIG_PATH),
    (ENTRYPOINT, "cleanup", "--output", _ANY, "--run-id", _ANY),
    FETCH_MODEL_COMMAND,
    FETCH_DATASET_COMMAND,
)
"""The commands a container the operator creates may run (``*``: any one argument): training from the
run's config, the cleanup of ``output.retention: Delete``, and the downloads before training. Each
checks, with the pod's token, that its own FineTuneJob asked for what it does (finetune_trainer.verify)
before it reads data, sends a credential or deletes a file."""
JOB_NAME_ANNOTATION = f"{GROUP}/finetunejob"

LITERAL_ENV = (
    "HOME",
    "HF_HOME",
    "TMPDIR",
    "XDG_CACHE_HOME",
    "MPLCONFIGDIR",
    "PYTHONUNBUFFERED",
    "FINETUNE_STATUS_PATCH",
    "FINETUNE_GPUS",
    "FINETUNE_GPU_MEMORY_BYTES",
    nodes.NNODES,
    nodes.RDZV_ENDPOINT,
    nodes.RDZV_ID,
    nodes.RDZV_TIMEOUT_SECONDS,
)
"""Variables with a plain value (paths under the pod's own /tmp, switches, a run over several nodes: its
rendezvous endpoint is pinned to the Job's own node 0 by the chart's policy)."""
FIELD_ENV = {
    "FINETUNE_JOB_NAME": f"metadata.annotations['{JOB_NAME_ANNOTATION}']",
    "FINETUNE_JOB_NAMESPACE": "metadata.namespace",
    "FINETUNE_POD_NAME": "metadata.name",
}
"""Variables from the downward API: the name -> the only field path it may read."""
REQUIRED_ENV = ("FINETUNE_JOB_NAME", "FINETUNE_JOB_NAMESPACE")
"""Every container of a Job names its FineTuneJob, which the trainer reads to check its config."""
SECRET_ENV = ("HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION")
"""Variables that may come from a Secret (``secretKeyRef``): only what a FineTuneJob's ``*SecretRef`` asks for
(``model.tokenSecretRef``: HF_TOKEN; ``*.credentialsSecretRef``: the AWS_* of an object store)."""
PINNED_ENV = ("HF_ENDPOINT", "FINETUNE_MODEL_CACHE", "FINETUNE_CA_BUNDLE")
"""Plain variables whose value the chart fixes (its admission policy renders the value into the rule): the
Hub a token is sent to, the model cache claim, the file of extra trusted CAs. Absent when the chart sets none."""

INPUT_SOURCE_FIELDS = (
    "model.source",
    "model.adapter",
    "dataset.source",
    "dataset.validationSource",
    "evaluation.generalSource",
)
"""Spec fields naming data the trainer reads (``pvc://<claim>/...``): the requester needs get on the claim."""


def input_sources(wire: Mapping[str, Any]) -> dict[str, str]:
    """The INPUT_SOURCE_FIELDS set in a spec's or a trainer config's wire dict, by field path."""
    found = {path: (wire.get(path.split(".")[0]) or {}).get(path.split(".")[1]) for path in INPUT_SOURCE_FIELDS}
    return {path: value for path, value in found.items() if value}


OUTPUT_CLAIM_FIELD = "output.pvc"
"""The claim the trainer writes: the requester must be allowed to update it."""
CA_BUNDLE_DIR = "/etc/finetune/ca"
"""Where a fetch container mounts the chart's CA bundle ConfigMap (FINETUNE_CA_BUNDLE is a key under it)."""
SECRET_REF_FIELDS = ("model.tokenSecretRef", "model.credentialsSecretRef", "dataset.credentialsSecretRef")
"""Spec fields naming a Secret handed to the trainer: the requester must be allowed to get it."""

TRAINER_STATUS_FIELDS = ("progress", "plan", "serving")
"""Status fields the run's trainer writes (the status-integrity policy lets it write only these)."""

GPU_MEMORY_ENV = "FINETUNE_GPU_MEMORY_BYTES"
"""One GPU's memory (bytes) on every node the trainer pod may land on, from their nvidia.com/gpu.memory labels."""

CONTRACT_PATH = Path("charts") / "finetune-operator" / "files" / "api-contract.yaml"


def contract() -> dict[str, Any]:
    return {
        "trainerPod": {
            "entrypoint": ENTRYPOINT,
            "commands": [list(c) for c in COMMANDS],
            "anyArgument": ANY_ARGUMENT,
            "requiredEnv": list(REQUIRED_ENV),
            "literalEnv": list(LITERAL_ENV),
            "fieldEnv": dict(FIELD_ENV),
            "secretEnv": list(SECRET_ENV),
            "pinnedEnv": list(PINNED_ENV),
            "caBundleDir": CA_BUNDLE_DIR,
            "rendezvous": {"endpointEnv": nodes.RDZV_ENDPOINT, "port": nodes.DEFAULT_RDZV_PORT},
        },
        "inputSourceFields": list(INPUT_SOURCE_FIELDS),
        "outputClaimField": OUTPUT_CLAIM_FIELD,
        "secretRefFields": list(SECRET_REF_FIELDS),
        "trainerStatusFields": list(TRAINER_STATUS_FIELDS),
    }


def render_contract() -> str:
    header = (
        "# Generated by `make crd` from operator/finetune_api/contract.py: do not edit.\n"
        "# The chart's admission policies (templates/admission-policies.yaml) read it.\n"
    )
    return header + yaml.safe_dump(contract(), sort_keys=True, width=120)
