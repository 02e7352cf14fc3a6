"""``finetune-train``: the trainer's one entry point.

    finetune-train [train] --config /etc/finetune/config.json     (or FINETUNE_CONFIG)
    finetune-train evaluate --model SRC [--adapter DIR] --data FILE.jsonl [--format auto]
    finetune-train cleanup --output DIR --run-id UID                (output.retention: Delete)

Exit codes are ``finetune_api.protocol.ExitCode``; a TrainerSummary goes to the termination
message path on success and on every failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from finetune_api.protocol import EXIT_CODE_REASONS, ExitCode, TrainerSummary
from finetune_api.training import DatasetFormat

from . import distributed
from .config import DEFAULT_CONFIG_PATH, load_config
from .errors import OOM_HINT, TrainerError, is_out_of_memory

log = logging.getLogger("finetune_trainer")


def setup_logging() -> None:
    """Human logs go to stderr; stdout carries only the JSON progress lines."""
    root = logging.getLogger("finetune_trainer")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        where = f" [rank {distributed.rank()}]" if distributed.is_worker() else ""
        h.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s{where} %(message)s"))
        root.addHandler(h)
    root.setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_warning()
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.utils.logging.set_verbosity_warning()
    except Exception:
        pass


def write_termination(path: str, summary: TrainerSummary) -> None:
    try:
        with open(path, "w") as f:
            f.write(summary.to_termination_message())
    except OSError as exc:
        log.warning("cannot write the termination message to %s: %s", path, exc)


def _termination_path_from(config_path: str) -> str:
    """Best effort for configs that fail validation: read reporting.terminationMessagePath raw."""
    try:
        with open(config_path) as f:
            raw = json.load(f)
        return raw.get("reporting", {}).get("terminationMessagePath") or "/dev/termination-log"
    except Exception:
        return "/dev/termination-log"


def failure_summary(exc: BaseException) -> tuple[int, TrainerSummary]:
    if isinstance(exc, TrainerError):
        code, message = exc.exit_code, exc.message
    elif is_out_of_memory(exc):
        code, message = (
            ExitCode.OUT_OF_MEMORY,
            f"{OOM_HINT} ({str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__})",
        )
    else:
        code, message = ExitCode.FAILED, f"{type(exc).__name__}: {str(exc).strip()[:1500]}"
    summary = TrainerSummary(outcome="failed", reason=EXIT_CODE_REASONS[code].value, message=message[:2048])
    return int(code), summary


def cmd_train(args) -> int:
    from .pipeline import make_reporter, train

    config_path = args.config or os.environ.get("FINETUNE_CONFIG") or DEFAULT_CONFIG_PATH
    termination = _termination_path_from(config_path)
    reporter = None
    try:
        config = load_config(config_path)
        termination = config.reporting.termination_message_path
        if not distributed.is_worker() and (processes := distributed.processes_wanted()) > 1:
            return run_workers(config, config_path, processes)
        if distributed.is_worker():
            distributed.setup_worker()
        log.info(
            "config %s: method %s, model %s, data %s, output %s",
            config_path,
            config.method.value,
            config.model.source,
            config.dataset.source,
            config.output.dir,
        )
        reporter = make_reporter(config)
        summary = train(config, reporter)
        if distributed.is_worker():
            distributed.finish_worker()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure gets a summary and an exit code
        code, summary = failure_summary(exc)
        if code == ExitCode.FAILED:
            log.error("training failed:\n%s", traceback.format_exc())
        else:
            log.error("%s", summary.message)
        if reporter is not None:
            try:
                reporter.update(stage="failed", final=True)
            except Exception:
                pass
        if distributed.is_worker():
            distributed.report_failure(summary, code)  # the launcher writes the termination message
        else:
            write_termination(termination, summary)
        return code
    if distributed.is_main():
        write_termination(termination, summary)
    log.info("done: %s", json.dumps(summary.metrics))
    return 0


def run_workers(config, config_path: str, processes: int) -> int:
    """Train with one process per GPU; on failure, the first failing worker's summary and exit code."""
    from .pipeline import make_reporter

    code, summary = distributed.launch(["--config", config_path], processes)
    if summary is not None:
        log.error("%s", summary.message)
        make_reporter(config).restore().update(stage="failed", final=True)
        write_termination(config.reporting.termination_message_path, summary)
    return code


def cmd_evaluate(args) -> int:
    from .methods import EvaluateRequest, evaluate_command

    try:
        result = evaluate_command(
            EvaluateRequest(
                model=args.model,
                data=args.data,
                adapter=args.adapter,
                format=DatasetFormat(args.format),
                max_seq_length=args.max_seq_length,
                batch_size=args.batch_size,
                compare_base=args.compare_base,
                quantize=args.qlora,
            )
        )
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        code, summary = failure_summary(exc)
        if code == ExitCode.FAILED:
            log.error("evaluation failed:\n%s", traceback.format_exc())
        print(json.dumps({"error": summary.message, "reason": summary.reason}), file=sys.stderr)
        return code
    print(json.dumps(result, indent=2))
    return 0


def cmd_cleanup(args) -> int:
    """``output.retention: Delete``: remove what run ``--run-id`` wrote to ``--output`` (nothing when
    the directory is another run's); one JSON line to stdout and the termination-message path."""
    from . import runrecord

    try:
        result = runrecord.cleanup(args.output, args.run_id)
    except OSError as exc:
        result = {"outcome": "failed", "message": f"could not clean up {args.output}: {exc}"}
    line = json.dumps(result)
    print(line)
    try:
        Path(args.termination_message_path).write_text(line)
    except OSError:
        pass  # not in a container
    return 1 if result["outcome"] == "failed" else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="finetune-train", description="Config-driven LoRA/QLoRA trainer")
    p.add_argument("--config", help=f"TrainerConfig JSON (default: $FINETUNE_CONFIG or {DEFAULT_CONFIG_PATH})")
    sub = p.add_subparsers(dest="command")
    t = sub.add_parser("train", help="train as the config says (the default)")
    t.add_argument("--config", dest="config_sub", help="TrainerConfig JSON")
    e = sub.add_parser(
        "evaluate",
        help="loss and perplexity of a model (+ adapter) on a dataset (accuracy/F1 for classification, "
        "preference accuracy and reward margin for preference data); prints JSON",
    )
    e.add_argument("--model", required=True, help="model source: a directory, hf://org/name or builtin:name")
    e.add_argument("--adapter", help="adapter directory (adapter_config.json + adapter_model.safetensors)")
    e.add_argument("--data", required=True, help="JSONL or JSON-array file")
    e.add_argument("--format", default="auto", choices=[f.value for f in DatasetFormat])
    e.add_argument("--max-seq-length", type=int, default=1024)
    e.add_argument("--batch-size", type=int, default=4)
    e.add_argument("--compare-base", action="store_true", help="also evaluate the base model without the adapter")
    e.add_argument("--qlora", action="store_true", help="load the base model in 4-bit (as QLoRA trained it)")
    c = sub.add_parser(
        "cleanup", help="remove the files one run wrote to its output directory (never another run's); prints JSON"
    )
    c.add_argument("--output", required=True, help="the run's output directory")
    c.add_argument("--run-id", required=True, help="the run (FineTuneJob uid) whose files to remove")
    c.add_argument("--termination-message-path", default="/dev/termination-log")
    return p


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    if args.command == "evaluate":
        return cmd_evaluate(args)
    if args.command == "cleanup":
        return cmd_cleanup(args)
    if getattr(args, "config_sub", None):
        args.config = args.config_sub
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
