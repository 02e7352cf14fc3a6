"""The completion record as finetune-operator 0.1.0 reads it (its finetune_api/protocol.py at
54093e3, field for field): models that forbid unknown fields. A run started by a newer operator must
still succeed when a rollback leaves 0.1.0 to read the trainer's termination message."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

STRICT = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ArtifactSummaryV010(BaseModel):
    model_config = STRICT
    path: str
    size_bytes: int = Field(ge=0)
    sha256: str | None = None


class TrainerSummaryV010(BaseModel):
    model_config = STRICT
    outcome: str = Field(pattern=r"^(succeeded|failed)$")
    reason: str | None = None
    message: str | None = Field(default=None, max_length=2048)
    metrics: dict[str, float] = Field(default_factory=dict)
    artifacts: ArtifactSummaryV010 | None = None
