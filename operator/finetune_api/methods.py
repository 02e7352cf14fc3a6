"""What is trained, and the record layouts it is trained on."""

from enum import StrEnum


class Method(StrEnum):
    """What is trained."""

    SFT = "sft"
    CLASSIFICATION = "classification"
    DPO = "dpo"


class DatasetFormat(StrEnum):
    """Record layouts the trainer understands."""

    AUTO = "auto"
    CHAT = "chat"  # {"messages": [{"role": ..., "content": ...}, ...]}
    ALPACA = "alpaca"  # {"instruction", "input"?, "output"}
    PROMPT_COMPLETION = "prompt-completion"  # {"prompt", "completion"}
    TEXT = "text"  # {"text"}
    SHAREGPT = "sharegpt"  # {"conversations": [{"from": ..., "value": ...}, ...]}
    PREFERENCE = "preference"  # {"prompt", "chosen", "rejected"} (DPO)
    CLASSIFICATION = "classification"  # {"text", "label"}


DEFAULT_DPO_BETA = 0.1
"""DPO's beta when ``training.dpoBeta`` is not set. finetune-operator 0.1.0's CRD defaulted the field to
this value for every method, so FineTuneJobs (and trainer configs) from before 0.2.0 carry it."""
