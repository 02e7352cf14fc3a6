"""The refused-manifest corpus: FineTuneJobs the API server must refuse (BAD, with the texts its
message must hold) and ones it must accept (GOOD). tests/integration/operator/test_operator_crd.py
sends them to a real API server; tests/unit/api/test_cel_parity.py evaluates the CRD's CEL rules on
them with a CEL library. Both compare the verdict with FineTuneJobSpec's."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from finetune_api.serving import MESSAGES
from support.operator import minimal_ftj


def set_field(path: str, value: Any) -> Callable[[dict], None]:
    """A mutation of the manifest: spec.<path> set to value (or removed: DELETE)."""

    def apply(body: dict) -> None:
        node = body["spec"]
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value

    return apply


DELETE = object()

BAD: list[tuple[str, list[Callable[[dict], None]], list[str]]] = [
    ("method-enum", [set_field("method", "rlhf")], ["spec.method", "Unsupported value", '"rlhf"']),
    ("rank-zero", [set_field("peft.r", 0)], ["spec.peft.r", "greater than or equal to 1"]),
    ("rank-type", [set_field("peft.r", "sixteen")], ["spec.peft.r", "must be of type integer"]),
    ("missing-model", [set_field("model", DELETE)], ["spec.model", "Required value"]),
    ("missing-dataset", [set_field("dataset", DELETE)], ["spec.dataset", "Required value"]),
    ("missing-output", [set_field("output", DELETE)], ["spec.output", "Required value"]),
    (
        "dpo-chat",
        [set_field("method", "dpo"), set_field("dataset.format", "chat")],
        ["method dpo trains on preference records"],
    ),
    (
        "classification-chat",
        [set_field("method", "classification"), set_field("dataset.format", "chat")],
        ["method classification trains on text/label records"],
    ),
    (
        "sft-preference",
        [set_field("dataset.format", "preference")],
        ["method sft trains on", "preference data: use method dpo"],
    ),
    ("labels-sft", [set_field("dataset.labels", ["a", "b"])], ["dataset.labels is only used by method classification"]),
    (
        "epochs-and-maxsteps",
        [set_field("training.epochs", 2), set_field("training.maxSteps", 100)],
        ["set at most one of training.epochs and training.maxSteps"],
    ),
    ("quantization-with-lora", [set_field("peft.quantization", {"bits": 4})], ["only valid with peft.type qlora"]),
    # batchSize is an integer or auto (int-or-string with one CEL rule)
    ("batch-size-word", [set_field("training.batchSize", "many")], ["spec.training.batchSize", "or one of ['auto']"]),
    ("batch-size-zero", [set_field("training.batchSize", 0)], ["spec.training.batchSize", "an integer from 1 to 4096"]),
    (
        "gpu-product-without-gpus",
        [set_field("resources.gpus", 0), set_field("resources.gpuProduct", "NVIDIA-A100-SXM4-80GB")],
        ["resources.gpuProduct needs resources.gpus >= 1"],
    ),
    ("too-many-gpus", [set_field("resources.gpus", 65)], ["spec.resources.gpus", "less than or equal to 64"]),
    ("bad-memory", [set_field("resources.memory", "lots")], ["spec.resources.memory", "should match"]),
    ("bad-pvc-name", [set_field("output.pvc", "Bad_Claim")], ["spec.output.pvc", "should match"]),
    (
        "bad-output-path",
        [set_field("output.path", "runs/../../escape")],
        ["spec.output.path", "must not contain '.' or '..'"],
    ),
    ("bad-output-path-chars", [set_field("output.path", "/abs path")], ["spec.output.path", "should match"]),
    ("bad-source-scheme", [set_field("model.source", "gs://bucket/model")], ["spec.model.source", "should match"]),
    # downloaded sources: an https:// file needs its sha256; a Hub dataset repo is no model
    (
        "https-without-sha256",
        [set_field("dataset.source", "https://data.example.com/train.jsonl")],
        ["spec.dataset.sha256", "set dataset.sha256 (its SHA-256)"],
    ),
    (
        "https-validation-without-sha256",
        [set_field("dataset.validationSource", "https://data.example.com/eval.jsonl")],
        ["spec.dataset.validationSha256", "set dataset.validationSha256"],
    ),
    (
        "dotdot-s3-source",
        [set_field("dataset.source", "s3://bucket/a/../../secret.jsonl")],
        ["spec.dataset.source", "must not contain '.' or '..' path segments"],
    ),
    (
        "s3-prefix-as-dataset",
        [set_field("dataset.source", "s3://bucket/data/")],
        ["spec.dataset.source", "should match"],
    ),
    ("hub-dataset-as-model", [set_field("model.source", "hf://datasets/name")], ["spec.model.source", "dataset repo"]),
    (
        "s3-credentials-secret-name",
        [set_field("model.source", "s3://models/llama/"), set_field("model.credentialsSecretRef", {"name": "ns/s3"})],
        ["spec.model.credentialsSecretRef.name", "should match"],
    ),
    ("bad-pvc-source", [set_field("dataset.source", "pvc://Bad_Claim/x")], ["spec.dataset.source", "should match"]),
    ("lr-zero", [set_field("training.learningRate", 0)], ["spec.training.learningRate", "greater than 0"]),
    ("dropout-one", [set_field("peft.dropout", 1.0)], ["spec.peft.dropout", "less than 1"]),
    (
        "validation-split",
        [set_field("dataset.validationSplit", 0.7)],
        ["spec.dataset.validationSplit", "less than 0.5"],
    ),
    ("format-enum", [set_field("dataset.format", "csv")], ["spec.dataset.format", "Unsupported value"]),
    (
        "toleration-operator",
        [set_field("scheduling.tolerations", [{"key": "x", "operator": "Maybe"}])],
        ["spec.scheduling.tolerations[0].operator", "Unsupported value"],
    ),
    ("backoff-limit", [set_field("backoffLimit", 11)], ["spec.backoffLimit", "less than or equal to 10"]),
    (
        "deadline-zero",
        [set_field("activeDeadlineSeconds", 0)],
        ["spec.activeDeadlineSeconds", "greater than or equal to 1"],
    ),
    ("queue-name", [set_field("scheduling.queueName", "bad queue!")], ["spec.scheduling.queueName", "should match"]),
    ("gguf-file", [set_field("model.ggufFile", "weights.bin")], ["spec.model.ggufFile", "should match"]),
    (
        "quantization-bits",
        [set_field("peft.type", "qlora"), set_field("peft.quantization", {"bits": 8})],
        ["spec.peft.quantization.bits", "Unsupported value"],
    ),
    ("suspend-type", [set_field("suspend", "yes")], ["spec.suspend", "must be of type boolean"]),
    ("unknown-field", [set_field("epochs", 3)], ['unknown field "spec.epochs"']),
    ("unknown-nested-field", [set_field("peft.rank", 8)], ['unknown field "spec.peft.rank"']),
    # sources only in the documented forms
    (
        "host-path-source",
        [set_field("dataset.source", "/etc/shadow")],
        ["spec.dataset.source", "under /data/ or /models/"],
    ),
    (
        "secret-token-source",
        [set_field("model.source", "/var/run/secrets/kubernetes.io/serviceaccount/token")],
        ["spec.model.source", "an absolute path must name a file baked into the trainer image"],
    ),
    (
        "dotdot-pvc-source",
        [set_field("dataset.source", "pvc://data/../../etc/passwd")],
        ["spec.dataset.source", "must not contain '.' or '..' path segments"],
    ),
    (
        "dotdot-image-source",
        [set_field("evaluation.generalSource", "/data/../proc/self/environ")],
        ["spec.evaluation.generalSource", "must not contain '.' or '..'"],
    ),
    (
        "dotdot-hub-model",
        [set_field("model.source", "hf://org/..")],
        ["spec.model.source", "model.source must not contain '.' or '..' path segments"],
    ),
    (
        "adapter-outside-image",
        [set_field("model.adapter", "/etc/adapter")],
        ["spec.model.adapter", "model.adapter: an absolute path must name a file baked into the trainer image"],
    ),
    (
        "dotdot-adapter",
        [set_field("model.adapter", "pvc://data/runs/../../x")],
        ["spec.model.adapter", "model.adapter must not contain '.' or '..' path segments"],
    ),
    (
        "validation-outside-image",
        [set_field("dataset.validationSource", "/tmp/eval.jsonl")],
        ["spec.dataset.validationSource", "under /data/ or /models/"],
    ),
    (
        "dotdot-validation",
        [set_field("dataset.validationSource", "pvc://data/a/../../eval.jsonl")],
        ["spec.dataset.validationSource", "must not contain '.' or '..' path segments"],
    ),
    (
        "general-outside-image",
        [set_field("evaluation.generalSource", "/proc/self/environ")],
        ["spec.evaluation.generalSource", "under /data/ or /models/"],
    ),
    # resources a node can hold
    ("cpu-too-large", [set_field("resources.cpu", "2000")], ["spec.resources.cpu", "must be between 100m and 1024"]),
    (
        "memory-too-small",
        [set_field("resources.memory", "64Mi"), set_field("resources.shmSize", "32Mi")],
        ["spec.resources.memory", "must be between 128Mi and 64Ti"],
    ),
    ("shm-too-small", [set_field("resources.shmSize", "512Ki")], ["spec.resources.shmSize", "between 1Mi and 64Ti"]),
    (
        "shm-above-memory",
        [set_field("resources.memory", "1Gi"), set_field("resources.shmSize", "2Gi")],
        ["spec.resources.shmSize", "must not exceed resources.memory"],
    ),
    ("dpo-beta-sft", [set_field("training.dpoBeta", 0.2)], ["training.dpoBeta is only used by method dpo"]),
    # pod-level fields with the Pod API's rules: refused here rather than on the trainer Job
    (
        "node-selector-key",
        [set_field("scheduling.nodeSelector", {"bad key!": "x"})],
        ["spec.scheduling.nodeSelector", "keys must be label/annotation keys"],
    ),
    (
        "node-selector-value",
        [set_field("scheduling.nodeSelector", {"zone": "not a value"})],
        ["spec.scheduling.nodeSelector.zone", "should match"],
    ),
    ("pod-label-key", [set_field("podLabels", {"-x": "y"})], ["spec.podLabels", "keys must be label/annotation keys"]),
    (
        "pod-annotation-key",
        [set_field("podAnnotations", {"a/b/c": "y"})],
        ["spec.podAnnotations", "keys must be label/annotation keys"],
    ),
    (
        "toleration-exists-value",
        [set_field("scheduling.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}])],
        ["spec.scheduling.tolerations[0].value", "must not set value"],
    ),
    (
        "toleration-no-key",
        [set_field("scheduling.tolerations", [{"operator": "Equal", "value": "v"}])],
        ["spec.scheduling.tolerations[0].operator", "without key must use operator Exists"],
    ),
    (
        "toleration-seconds",
        [set_field("scheduling.tolerations", [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}])],
        ["spec.scheduling.tolerations[0].tolerationSeconds", "needs effect NoExecute"],
    ),
    (
        "secret-in-other-namespace",
        [set_field("model.tokenSecretRef", {"name": "other-ns/hf-token"})],
        ["spec.model.tokenSecretRef.name", "should match"],
    ),
    (
        "priority-class-name",
        [set_field("scheduling.priorityClassName", "Not_Valid")],
        ["spec.scheduling.priorityClassName", "should match"],
    ),
    # serving paths that cannot fit the adapter: refused with what to change, never written to fail later
    (
        "serving-classifier-to-vllm",
        [
            set_field("method", "classification"),
            set_field("output.merge", True),
            set_field("serving.runtimes", ["vllm"]),
        ],
        ["spec.serving.runtimes", MESSAGES["classification-llm"]],
    ),
    (
        "serving-classifier-unmerged",
        [set_field("method", "classification"), set_field("serving.runtimes", ["kserve"])],
        [MESSAGES["classification-merge"]],
    ),
    (
        "serving-rank-below-r",
        [set_field("peft.r", 32), set_field("serving.maxLoraRank", 16)],
        ["spec.serving.maxLoraRank", MESSAGES["rank-below-r"]],
    ),
    (
        "serving-rank-above-vllm",
        [set_field("peft.r", 1024), set_field("serving.runtimes", ["vllm", "kserve"])],
        ["spec.peft.r", MESSAGES["rank-above-max"]],
    ),
    (
        "serving-kaito-claim-base",
        [set_field("model.source", "pvc://models/llama"), set_field("serving.runtimes", ["kaito"])],
        [MESSAGES["kaito-base"]],
    ),
    (
        "serving-vllm-s3-base",
        [set_field("model.source", "s3://models/llama/"), set_field("serving.runtimes", ["vllm"])],
        [MESSAGES["vllm-s3-base"]],
    ),
    (
        "serving-image-base",
        [set_field("model.source", "/models/llama"), set_field("serving.runtimes", ["vllm"])],
        [MESSAGES["image-base"]],
    ),
    (
        "serving-gguf-base",
        [
            set_field("model.source", "hf://org/model"),
            set_field("model.ggufFile", "m.gguf"),
            set_field("serving.runtimes", ["vllm"]),
        ],
        [MESSAGES["gguf-base"]],
    ),
    (
        "serving-twice",
        [set_field("serving.runtimes", ["vllm", "vllm"])],
        ["spec.serving.runtimes[1]", "Duplicate value", MESSAGES["twice"]],
    ),
    (
        "serving-runtime-enum",
        [set_field("serving.runtimes", ["triton"])],
        ["spec.serving.runtimes[0]", "Unsupported value"],
    ),
    (
        "serving-max-rank-enum",
        [set_field("serving.maxLoraRank", 24)],
        ["spec.serving.maxLoraRank", "Unsupported value"],
    ),
    ("serving-replicas", [set_field("serving.replicas", 0)], ["spec.serving.replicas", "greater than or equal to 1"]),
    ("nodes-zero", [set_field("resources.nodes", 0)], ["spec.resources.nodes", "greater than or equal to 1"]),
    ("nodes-too-many", [set_field("resources.nodes", 65)], ["spec.resources.nodes", "less than or equal to 64"]),
    (
        "rendezvous-timeout-short",
        [set_field("resources.nodes", 2), set_field("resources.rendezvousTimeoutSeconds", 5)],
        ["spec.resources.rendezvousTimeoutSeconds", "greater than or equal to 30"],
    ),
    (
        "rendezvous-timeout-one-node",
        [set_field("resources.rendezvousTimeoutSeconds", 120)],
        ["resources.rendezvousTimeoutSeconds bounds the wait for the other nodes: it needs resources.nodes >= 2"],
    ),
    (
        "nodes-own-anti-affinity",
        [
            set_field("resources.nodes", 2),
            set_field(
                "scheduling.affinity",
                {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}
                        ]
                    }
                },
            ),
        ],
        ["scheduling.affinity.podAntiAffinity is the operator's with resources.nodes above 1"],
    ),
    # the adversarial corpus (issues 9 and 16): what a tenant would try, field by field
    *(
        (name, [set_field(path, value)], [f"spec.{path}", *texts])
        for name, path, value, *texts in [
            ("method-type", "method", 5, "must be of type string"),
            ("model-source-empty", "model.source", "", "at least 2 chars long"),
            ("dot-segment-pvc-model", "model.source", "pvc://data/./x", "must not contain '.' or '..' path segments"),
            ("hub-escape-model", "model.source", "hf://../../etc/passwd", "should match"),
            ("builtin-escape-model", "model.source", "builtin:../../x", "should match"),
            ("image-dir-itself-as-model", "model.source", "/data", "a file baked into the trainer image"),
            ("image-prefix-trick-model", "model.source", "/dataset/x", "a file baked into the trainer image"),
            ("gguf-file-escape", "model.ggufFile", "../x.gguf", "should match"),
            ("revision-empty", "model.revision", "", "at least 1 chars long"),
            ("token-secret-key-slash", "model.tokenSecretRef", {"name": "hub-token", "key": "a/b"}, ".key"),
            ("trust-remote-code-type", "model.trustRemoteCode", "yes", "must be of type boolean"),
            ("builtin-adapter", "model.adapter", "builtin:smollm2-135m-instruct", "should match"),
            ("hub-model-repo-as-dataset", "dataset.source", "hf://org/dataset", "should match"),
            ("builtin-dataset", "dataset.source", "builtin:alpaca", "should match"),
            ("file-scheme-dataset", "dataset.source", "file:///etc/passwd", "should match"),
            ("hub-model-repo-as-validation", "dataset.validationSource", "hf://org/dataset", "should match"),
            ("builtin-general-source", "evaluation.generalSource", "builtin:wikitext", "should match"),
            ("validation-split-at-max", "dataset.validationSplit", 0.5, "less than 0.5"),
            ("validation-split-negative", "dataset.validationSplit", -0.1, "greater than or equal to 0"),
            ("validation-split-string", "dataset.validationSplit", "0.1", "must be of type number"),
            ("min-records-zero", "dataset.minRecords", 0, "greater than or equal to 1"),
            ("min-chars-negative", "dataset.minChars", -1, "greater than or equal to 0"),
            ("deduplicate-type", "dataset.deduplicate", "true", "must be of type boolean"),
            ("peft-type-enum", "peft.type", "ia3", "Unsupported value"),
            ("rank-too-large", "peft.r", 2048, "less than or equal to 1024"),
            ("alpha-zero", "peft.alpha", 0, "greater than or equal to 1"),
            ("target-modules-empty", "peft.targetModules", [], "at least 1 items"),
            ("target-module-empty-name", "peft.targetModules", [""], "[0]"),
            ("target-modules-too-many", "peft.targetModules", [f"m{i}" for i in range(65)], "at most 64 items"),
            ("bias-enum", "peft.bias", "some", "Unsupported value"),
            ("epochs-zero", "training.epochs", 0, "greater than 0"),
            ("max-steps-zero", "training.maxSteps", 0, "greater than or equal to 1"),
            ("lr-above-one", "training.learningRate", 2, "less than or equal to 1"),
            ("scheduler-enum", "training.lrScheduler", "step", "Unsupported value"),
            ("warmup-whole-run", "training.warmupRatio", 1.0, "less than 1"),
            ("accumulation-too-large", "training.gradientAccumulationSteps", 5000, "less than or equal to 4096"),
            ("optimizer-enum", "training.optimizer", "adam", "Unsupported value"),
            ("weight-decay-above-one", "training.weightDecay", 2, "less than or equal to 1"),
            ("grad-norm-zero", "training.maxGradNorm", 0, "greater than 0"),
            ("seq-length-too-small", "training.maxSeqLength", 8, "greater than or equal to 16"),
            ("packing-type", "training.packing", "yes", "must be of type boolean"),
            ("seed-negative", "training.seed", -1, "greater than or equal to 0"),
            ("logging-steps-zero", "training.loggingSteps", 0, "greater than or equal to 1"),
            ("attention-kernel-enum", "training.kernels.attention", "flash", "Unsupported value"),
            ("sample-generations-too-many", "evaluation.sampleGenerations", 51, "less than or equal to 50"),
            ("max-new-tokens-zero", "evaluation.maxNewTokens", 0, "greater than or equal to 1"),
            ("output-pvc-missing", "output.pvc", DELETE, "Required value"),
            ("output-path-absolute", "output.path", "/abs/dir", "should match"),
            ("output-path-dot", "output.path", ".", "must not contain '.' or '..'"),
            ("output-path-double-slash", "output.path", "a//b", "should match"),
            ("retention-enum", "output.retention", "Keep", "Unsupported value"),
            ("replace-type", "output.replace", "true", "must be of type boolean"),
            ("gpus-negative", "resources.gpus", -1, "greater than or equal to 0"),
            ("cpu-word", "resources.cpu", "lots", "should match"),
            ("memory-decimal-byte-suffix", "resources.memory", "16GB", "should match"),
            ("memory-negative", "resources.memory", "-1Gi", "should match"),
            ("shm-unknown-unit", "resources.shmSize", "1Xi", "should match"),
            ("image-empty", "image", "", "at least 1 chars long"),
            ("image-too-long", "image", "registry.example/ml/" + "x" * 500, "Too long"),
            ("pod-label-value", "podLabels", {"team": "has space"}, ".team", "should match"),
            ("pod-label-value-too-long", "podLabels", {"team": "x" * 64}, ".team"),
            ("pod-labels-too-many", "podLabels", {f"k{i}": "v" for i in range(65)}, "at most 64"),
            ("pod-annotation-too-long", "podAnnotations", {"big": "x" * 4097}, ".big", "more than 4096 bytes"),
            ("ttl-negative", "ttlSecondsAfterFinished", -1, "greater than or equal to 0"),
        ]
    ),
    (
        "token-secret-without-name",
        [set_field("model.tokenSecretRef", {"key": "token"})],
        ["spec.model.tokenSecretRef.name", "Required value"],
    ),
    ("dataset-source-missing", [set_field("dataset.source", DELETE)], ["spec.dataset.source", "Required value"]),
    (
        "one-label",
        [set_field("method", "classification"), set_field("dataset.labels", ["a"])],
        ["spec.dataset.labels", "at least 2 items"],
    ),
    (
        "empty-label",
        [set_field("method", "classification"), set_field("dataset.labels", ["a", ""])],
        ["spec.dataset.labels[1]"],
    ),
    (
        "too-many-labels",
        [set_field("method", "classification"), set_field("dataset.labels", [f"l{i}" for i in range(1001)])],
        ["spec.dataset.labels", "at most 1000 items"],
    ),
    (
        "quant-type-enum",
        [set_field("peft.type", "qlora"), set_field("peft.quantization", {"quantType": "int4"})],
        ["spec.peft.quantization.quantType", "Unsupported value"],
    ),
    (
        "compute-dtype-enum",
        [set_field("peft.type", "qlora"), set_field("peft.quantization", {"computeDtype": "fp8"})],
        ["spec.peft.quantization.computeDtype", "Unsupported value"],
    ),
    (
        "dpo-beta-zero",
        [set_field("method", "dpo"), set_field("dataset.format", "preference"), set_field("training.dpoBeta", 0)],
        ["spec.training.dpoBeta", "greater than 0"],
    ),
    (
        "toleration-effect",
        [set_field("scheduling.tolerations", [{"key": "nvidia.com/gpu", "effect": "NoWhere"}])],
        ["spec.scheduling.tolerations[0].effect", "Unsupported value"],
    ),
    (
        "toleration-key",
        [set_field("scheduling.tolerations", [{"key": "bad key", "operator": "Exists"}])],
        ["spec.scheduling.tolerations[0].key", "should match"],
    ),
    (
        "affinity-operator",
        [
            set_field(
                "scheduling.affinity",
                {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "zone", "operator": "Bogus", "values": ["a"]}]}
                            ]
                        }
                    }
                },
            )
        ],
        [
            "spec.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
            ".nodeSelectorTerms[0].matchExpressions[0].operator",
            "Unsupported value",
        ],
    ),  # fmt: skip
    (
        "affinity-type",
        [set_field("scheduling.affinity", {"nodeAffinity": "yes"})],
        ["spec.scheduling.affinity.nodeAffinity", "must be of type object"],
    ),
    (
        "affinity-empty-topology-key",
        [
            set_field(
                "scheduling.affinity",
                {
                    "podAntiAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [
                            {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": ""}
                        ]
                    }
                },
            )
        ],
        ["spec.scheduling.affinity.podAntiAffinity", "topologyKey"],
    ),  # fmt: skip
]


GOOD: dict[str, dict[str, Any]] = {
    "image-data": {"dataset": {"source": "/data/train.jsonl"}, "model": {"source": "/models/llama"}},
    "tolerations": {
        "scheduling": {
            "tolerations": [
                {"key": "team", "operator": "Equal", "value": "a", "effect": "NoExecute", "tolerationSeconds": 30}
            ]
        }
    },
    "labels": {"podLabels": {"example.com/team": "a"}, "podAnnotations": {"example.com/note": "any text: ok"}},
    "secret": {"model": {"source": "hf://org/model", "tokenSecretRef": {"name": "hf-token", "key": "token"}}},
    "downloaded-sources": {
        "model": {"source": "s3://models/minilm/", "credentialsSecretRef": {"name": "s3", "endpointKey": "url"}},
        "dataset": {
            "source": "https://data.example.com/train.jsonl?X-Amz-Signature=abc",
            "sha256": "0" * 64,
            "validationSource": "hf://datasets/org/log-intent/validation",
            "revision": "v1.0",
        },
    },
    "s3-dataset": {"dataset": {"source": "s3://data/log-intent/train.jsonl", "credentialsSecretRef": {"name": "s3"}}},
    "auto-batch-long-context": {
        "peft": {"type": "qlora"},
        "training": {"batchSize": "auto", "maxSeqLength": 262144, "kernels": {"offload": "on", "tiledMlp": "off"}},
    },
    "qlora-without-quantization": {
        "peft": {"type": "qlora"},
        "method": "dpo",
        "dataset": {"source": "pvc://data/p.jsonl", "format": "preference"},
    },
    "serving-every-path": {"serving": {"runtimes": ["vllm", "kserve", "kaito"], "replicas": 2, "maxLoraRank": 16}},
    "serving-claim-base": {"model": {"source": "pvc://models/llama"}, "serving": {"runtimes": ["vllm", "kserve"]}},
    "serving-s3-base": {"model": {"source": "s3://models/llama/"}, "serving": {"runtimes": ["kserve"]}},
    "serving-merged-classifier": {
        "method": "classification",
        "output": {"pvc": "artifacts", "merge": True},
        "serving": {"runtimes": ["kserve"]},
    },
    "serving-none": {"peft": {"r": 1024}, "serving": {"runtimes": []}},
    # what finetune-operator 0.1.0's CRD stored in every FineTuneJob: it must still validate after an upgrade
    "legacy-dpo-beta-default": {"training": {"dpoBeta": 0.1}},
    "two-nodes": {
        "resources": {"nodes": 2, "gpus": 8, "rendezvousTimeoutSeconds": 300},
        "scheduling": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}},
    },
    # a continued adapter's own rank counts (the trainer reads it), not peft.r
    "serving-continued-adapter": {
        "model": {"source": "hf://o/m", "adapter": "pvc://a/sft"},
        "serving": {"maxLoraRank": 8},
    },
}


def bad_manifest(name: str, mutations: list[Callable[[dict], None]]) -> dict[str, Any]:
    body = minimal_ftj(name)
    for mutate in mutations:
        mutate(body)
    return body


def good_manifest(name: str, case: str) -> dict[str, Any]:
    return minimal_ftj(name, **copy.deepcopy(GOOD[case]))
