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


class InsufficientGPUMemory(TrainerError):
    """The memory plan does not fit the GPU (decided before the model loads)."""

    exit_code = ExitCode.INSUFFICIENT_GPU_MEMORY


class OutputExistsError(TrainerError):
    """The output directory belongs to another run (see ``runrecord``)."""

    exit_code = ExitCode.OUTPUT_EXISTS


class SourceNotFoundError(TrainerError):
    """404: no such bucket, object, repo, file in the repo, or URL."""

    exit_code = ExitCode.SOURCE_NOT_FOUND


class SourceForbiddenError(TrainerError):
    """401/403: wrong or missing credentials, a gated repo."""

    exit_code = ExitCode.SOURCE_FORBIDDEN


class RevisionNotFoundError(TrainerError):
    exit_code = ExitCode.REVISION_NOT_FOUND


class ChecksumMismatchError(TrainerError):
    exit_code = ExitCode.CHECKSUM_MISMATCH


class DownloadFailedError(TrainerError):
    """The connection failed or was cut off, TLS did not verify, the server answered an error."""

    exit_code = ExitCode.DOWNLOAD_FAILED


class CacheFullError(TrainerError):
    exit_code = ExitCode.CACHE_FULL


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


EXCERPT_LIMIT = 40


def short(value: object, limit: int = EXCERPT_LIMIT) -> str:
    """A JSON rendering of ``value`` for messages; beyond ``limit`` characters, a marked excerpt:
    messages quote the data they refuse, and no more of it than needed to find the line."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[: limit - 3]}... (an excerpt: {len(text)} characters in all)"
