"""Errors that end a run with a specific exit code (see ``finetune_api.protocol.ExitCode``)."""

from __future__ import annotations

import json

from finetune_api.protocol import EXIT_CODE_REASONS, ExitCode, FailureReason


class TrainerError(Exception):
    """An expected failure: one clear message and the exit code that classifies it."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    @property
    def reason(self) -> FailureReason:
        return EXIT_CODE_REASONS[self.exit_code]


class ConfigError(TrainerError):
    exit_code = ExitCode.INVALID_CONFIG


class DataError(TrainerError):
    exit_code = ExitCode.INVALID_DATA

    @classmethod
    def at(cls, file: str, line: int | None, field: str | None, problem: str) -> DataError:
        """``train.jsonl:17: field "messages[2].role": expected ..., got "bot"``."""
        where = f"{file}:{line}" if line is not None else file
        if field:
            return cls(f'{where}: field "{field}": {problem}')
        return cls(f"{where}: {problem}")


class ModelNotFoundError(TrainerError):
    exit_code = ExitCode.MODEL_NOT_FOUND


class OutOfMemory(TrainerError):
    exit_code = ExitCode.OUT_OF_MEMORY


class OutputExistsError(TrainerError):
    """The output directory belongs to another run (see ``runrecord``)."""

    exit_code = ExitCode.OUTPUT_EXISTS


OOM_HINT = (
    "out of memory: try a smaller training.batchSize (raise gradientAccumulationSteps to keep the effective batch), "
    "training.gradientCheckpointing: true, peft.type: qlora, or a shorter training.maxSeqLength"
)


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA OOM (``torch.cuda.OutOfMemoryError``) or an allocator RuntimeError saying "out of memory"."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover - torch missing
        pass
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()
    )


def short(value: object, limit: int = 60) -> str:
    """A JSON rendering of ``value`` for messages, cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
