"""Serving hand-off: what the user asks for (``spec.serving``), the messages of the rules that refuse
impossible combinations (the rules themselves: ``rules.SERVING_RULES``, read as CEL and by the
models) and what the trainer reports back (``status.serving``, from its TrainerSummary).

A causal-LM adapter (method sft or dpo) goes to vLLM, KServe's LLMInferenceService or a KAITO
Workspace, each loading the base model and the adapter from the artifacts claim. A classification
adapter goes to KServe's Hugging Face runtime as the merged model (``output.merge``): none of the
LLM servers serve sequence-classification adapters.
"""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from .base import ApiModel


class ServingRuntime(StrEnum):
    """A serving path the trainer writes manifests for."""

    VLLM = "vllm"
    KSERVE = "kserve"
    KAITO = "kaito"


LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM accepts for ``--max-lora-rank`` (``MaxLoRARanks`` in vllm/config/lora.py); KServe's
``spec.model.lora.maxRank`` and KAITO's inference config pass the value on to vLLM."""
MAX_LORA_RANK = LORA_RANKS[-1]
SHARED_ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany")

MESSAGES = {
    "classification-llm": (
        "serving.runtimes: vllm and kaito serve causal-LM adapters; a classification adapter is served as the "
        "merged model on KServe: use runtimes [kserve] with output.merge: true"
    ),
    "classification-merge": (
        "serving.runtimes kserve serves a classification adapter as the merged model: set output.merge: true"
    ),
    "rank-below-r": (
        "serving.maxLoraRank is below peft.r, and vLLM refuses adapters of a higher rank than --max-lora-rank: "
        "raise serving.maxLoraRank or leave it unset"
    ),
    "rank-above-max": (
        f"peft.r is above {MAX_LORA_RANK}, the highest LoRA rank vLLM (and so KServe and KAITO) serves: lower peft.r, "
        "or set serving.runtimes: [] for no serving manifests"
    ),
    "kaito-base": (
        "serving.runtimes kaito needs a base model KAITO downloads by its Hub id (model.source hf:// or builtin:); "
        "serve a base on a claim with vllm or kserve"
    ),
    "image-base": (
        "serving.runtimes: the base model is a path inside the trainer image, which no serving stack can load; "
        "use a pvc:// or hf:// base, or leave serving.runtimes unset"
    ),
    "gguf-base": (
        "serving.runtimes: the serving manifests load a safetensors base, and a GGUF base (model.ggufFile) has "
        "none: leave serving.runtimes unset"
    ),
    "twice": "serving.runtimes lists a runtime twice: list each once",
    "vllm-s3-base": (
        "serving.runtimes vllm loads its base model from the Hub or a claim; serve an s3:// base with kserve "
        "(its storage initializer reads s3://), or copy the base to a claim"
    ),
}


class ServingSpec(ApiModel):
    """How the adapter is handed to a serving stack: the manifests written next to it (`serving/` in the
    output directory) and the serving paths listed in status.serving."""

    runtimes: list[ServingRuntime] | None = Field(default=None, max_length=3)
    (
        "Serving paths to write manifests for: `vllm` (Deployment + Service), `kserve` (an LLMInferenceService; for "
        "a classifier an InferenceService on the merged model), `kaito` (a Workspace). Unset: every path that fits "
        "the adapter; `[]`: none."
    )
    replicas: int = Field(default=1, ge=1, le=64)
    (
        "Serving replicas (vLLM Deployment, LLMInferenceService, InferenceService; a KAITO Workspace runs one). Above "
        "1 the artifacts claim must be ReadOnlyMany or ReadWriteMany; where its access modes are not known to be, "
        "the manifests keep 1 replica."
    )
    max_lora_rank: Literal[1, 8, 16, 32, 64, 128, 256, 320, 512] | None = None
    (
        "vLLM `--max-lora-rank` (KServe `maxRank`): one of vLLM's values, at least the adapter's rank. Default: the "
        "smallest of them not below the rank."
    )


def lora_rank_limit(rank: int) -> int | None:
    """The smallest ``--max-lora-rank`` vLLM accepts for an adapter of ``rank`` (None above 512)."""
    return next((r for r in LORA_RANKS if r >= rank), None)


def claim_access_problem(replicas: int, claim: str, access_modes: list[str]) -> str | None:
    """Why ``replicas`` serving pods cannot share the output claim, as one line (None when they can).

    For the operator, which can read the claim (the trainer cannot): several replicas land on several
    nodes, and a ReadWriteOnce claim mounts on one node only."""
    if replicas <= 1 or any(m in SHARED_ACCESS_MODES for m in access_modes):
        return None
    modes = ", ".join(access_modes) or "no access modes"
    return (
        f"serving.replicas {replicas} needs the output claim {claim!r} to be ReadOnlyMany or ReadWriteMany "
        f"(it is {modes}): set serving.replicas: 1, or write the output to a claim several nodes can mount"
    )


class ServingStatus(ApiModel):
    """What a serving stack needs to load the adapter (also the trainer's report of it)."""

    adapter_uri: str = Field(max_length=1100)
    """The adapter directory: `pvc://<claim>/<path>`."""
    base_model: str = Field(max_length=1100)
    (
        "The base model by a reference that resolves outside the trainer: `hf://<org>/<name>` (also for the "
        "built-in models: their upstream Hub ids) or `pvc://<claim>/<path>`."
    )
    base_model_revision: str | None = Field(default=None, max_length=255)
    """Hub revision of the base model, where known."""
    base_model_sha256: str | None = Field(default=None, max_length=64)
    (
        "SHA-256 of the base weights the adapter was trained on (of the weights file; for several files, of their "
        "`SHA256SUMS` list)."
    )
    task_type: Annotated[str, Field(max_length=32)]
    """PEFT task type: `CAUSAL_LM` (vLLM, KServe, KAITO) or `SEQ_CLS` (the merged model on KServe)."""
    lora_rank: int = Field(ge=1)
    """LoRA rank r (vLLM serves it with `--max-lora-rank` at least this)."""
    target_modules: list[Annotated[str, Field(max_length=128)]] = Field(default_factory=list, max_length=64)
    """Modules the adapter changes."""
    runtimes: list[ServingRuntime] = Field(default_factory=list, max_length=3)
    """Serving paths whose manifests were written."""
    manifests: str | None = Field(default=None, max_length=1100)
    """Where the manifests are: `pvc://<claim>/<path>/serving`."""
    merged_uri: str | None = Field(default=None, max_length=1100)
    """The merged model (base + adapter), when `output.merge` wrote one."""
    note: str | None = Field(default=None, max_length=512)
    """Why a serving path was left out or changed, and how the base weights differ from the upstream ones."""
