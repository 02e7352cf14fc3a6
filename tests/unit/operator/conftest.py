import copy

import pytest

from finetune_operator.config import OperatorConfig

BASE_FTJ = {
    "apiVersion": "finetune.dev/v1alpha1",
    "kind": "FineTuneJob",
    "metadata": {
        "name": "demo",
        "namespace": "team-a",
        "uid": "1111-2222",
        "generation": 1,
        "creationTimestamp": "2025-01-01T00:00:00Z",
    },
    "spec": {
        "model": {"source": "pvc://models/smollm2"},
        "dataset": {"source": "pvc://data/train.jsonl", "format": "chat"},
        "output": {"pvc": "artifacts"},
        "resources": {"gpus": 2, "gpuProduct": "NVIDIA-A100-SXM4-80GB"},
    },
}


@pytest.fixture
def ftj():
    return copy.deepcopy(BASE_FTJ)


@pytest.fixture
def cfg():
    return OperatorConfig(namespaces=("team-a",), trainer_image="trainer:test")
