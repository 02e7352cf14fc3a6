"""``finetune-train``: the trainer's one entry point.

    finetune-train [train] --config /etc/finetune/config.json     (or FINETUNE_CONFIG)
    finetune-train evaluate --model SRC [--adapter DIR] --data FILE.jsonl [--format auto]
    finetune-train cleanup --output DIR --run-id UID                (output.retention: Delete)
    finetune-train fetch --source SRC --into DIR [--revision R] [--sha256 H] [--format F --method M]
    finetune-train plan --config job.yaml [--gpu-memory 80GiB]      (the GPU memory plan, before submitting)
    finetune-train serve --adapter DIR [--model SRC] [--port 8080]  (HTTP answers from an adapter)

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

from . import distributed, launcher, verify
from .config import DEFAULT_CONFIG_PATH, load_config
from .errors import OOM_HINT, ConfigError, TrainerError, is_out_of_memory

log = logging.getLogger("finetune_trainer")


def setup_logging(libraries: bool = True) -> None:
    """Human logs go to stderr; stdout carries only the JSON progress lines. `libraries`: quiet
    transformers' and datasets' own logging too (importing them takes seconds: not for fetch)."""
    root = logging.getLogger("finetune_trainer")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        where = f" [rank {distributed.rank()}]" if distributed.is_worker() else ""
        h.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s{where} %(message)s"))
        root.addHandler(h)
    root.setLevel(logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not libraries:
        return
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
        if not distributed.is_worker():
            ftj = verify.own_finetunejob()
            if ftj is not None:
                verify.check_config(config, ftj)
        if not distributed.is_worker() and (top := launcher.topology(config.output.run_id)).world_size > 1:
            return run_workers(config, config_path, top)
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


def run_workers(config, config_path: str, top: launcher.Topology) -> int:
    """Train with one process per GPU (on this node and, with several nodes, on the others); on
    failure, the first failing process's summary and exit code. Node 0 reports the failed stage."""
    from .pipeline import make_reporter

    code, summary = launcher.launch(["--config", config_path], top, config.output.dir)
    if summary is not None:
        log.error("%s", summary.message)
        if top.node_rank == 0:
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
        ftj = verify.own_finetunejob()
        if ftj is not None:
            verify.check_cleanup(ftj, args.output, args.run_id)
        result = runrecord.cleanup(args.output, args.run_id)
    except OSError as exc:
        result = {"outcome": "failed", "message": f"could not clean up {args.output}: {exc}"}
    except ConfigError as exc:
        result = {"outcome": "refused", "message": exc.message}
    line = json.dumps(result)
    print(line)
    try:
        Path(args.termination_message_path).write_text(line)
    except OSError:
        pass  # not in a container
    return 1 if result["outcome"] in ("failed", "refused") else 0


def cmd_fetch(args) -> int:
    """Download a model or dataset into a shared destination once (finetune_trainer.fetch); the
    FetchRecord as one JSON line on stdout and in the termination message, or a failure summary."""
    import signal

    from finetune_api.training import Method

    from .fetch import FetchRequest, fetch, trust_extra_cas

    signal.signal(signal.SIGTERM, _terminated)  # the temporary directory is removed on the way out
    try:
        request = FetchRequest(
            source=args.source,
            kind=args.kind or default_kind(args.source),
            revision=args.revision or None,  # the operator passes "" for none (fixed argument positions)
            sha256=args.sha256 or None,
            format=DatasetFormat(args.format) if args.format else None,
            method=Method(args.method) if args.method else None,
        )
        ftj = verify.own_finetunejob()
        if ftj is not None:  # before any credential is sent
            verify.check_fetch(ftj, request.source, request.kind, request.revision, request.sha256, args.into)
        trust_extra_cas()
        record = fetch(request, Path(args.into), args.lock_timeout)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - every failure gets a summary and an exit code
        code, summary = failure_summary(exc)
        log.error("fetch failed: %s", summary.message if code != ExitCode.FAILED else traceback.format_exc())
        write_termination(args.termination_message_path, summary)
        return code
    line = record.to_termination_message()
    print(line, flush=True)
    try:
        Path(args.termination_message_path).write_text(line)
    except OSError:
        pass  # not in a container
    return 0


def default_kind(source: str) -> str:
    """hf://<org>/<name> and s3://<bucket>/<prefix>/ are models; files are datasets."""
    if source.startswith("hf://") and not source.startswith("hf://datasets/"):
        return "model"
    return "model" if source.startswith("s3://") and source.endswith("/") else "dataset"


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def cmd_plan_safely(args) -> int:
    """``finetune-train plan``; a bad config or model prints one line and its exit code."""
    from .plan_command import cmd_plan

    try:
        return cmd_plan(args)
    except TrainerError as exc:
        print(json.dumps({"error": exc.message, "reason": exc.reason.value}), file=sys.stderr)
        return int(exc.exit_code)


def cmd_serve(args) -> int:
    """Load the adapter (and its base) and answer HTTP requests until stopped; a load failure is one line
    on stderr and the exit code of its reason."""
    from .serve import load, serve

    try:
        served = load(args.adapter, args.model, args.name)
    except TrainerError as exc:
        log.error("%s", exc.message)
        return int(exc.exit_code)
    serve(served, args.host, args.port)
    return 0


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
    f = sub.add_parser(
        "fetch",
        help="download a model or dataset (s3://, https://, hf://) into a shared destination once, checked "
        "against the source's hashes; prints the record as JSON",
    )
    f.add_argument("--source", required=True, help="s3://bucket/key, s3://bucket/prefix/, https://..., hf://...")
    f.add_argument("--into", required=True, help="the destination directory (a cache claim), shared by fetches")
    f.add_argument("--kind", choices=["model", "dataset"], help="default: model for hf://org/name and s3://.../")
    f.add_argument("--revision", help="Hub branch, tag or commit (hf://)")
    f.add_argument("--sha256", help="expected SHA-256 (required for https://)")
    f.add_argument("--format", choices=[v.value for v in DatasetFormat], help="validate a dataset's records")
    f.add_argument("--method", choices=["sft", "classification", "dpo"], help="with --format: the method")
    f.add_argument("--lock-timeout", type=float, default=7200.0, help="longest wait for another fetch (s)")
    f.add_argument("--termination-message-path", default="/dev/termination-log")
    pl = sub.add_parser(
        "plan", help="the GPU memory plan of a FineTuneJob or trainer config (prints JSON; exit 14 if it does not fit)"
    )
    pl.add_argument("--config", dest="plan_config", required=True, help="FineTuneJob YAML or TrainerConfig")
    pl.add_argument("--model-config", help="the model's config.json (for pvc:// models)")
    pl.add_argument("--gpu-memory", help="GPU memory to plan for: bytes or 80GiB / 81559Mi (default: this GPU)")
    add_serve_parser(sub)
    return p


def add_serve_parser(sub) -> None:
    s = sub.add_parser(
        "serve", help="answer HTTP requests (KServe v1 protocol) with an adapter and its base model; docs/serving.md"
    )
    s.add_argument("--adapter", required=True, help="the adapter directory (read only)")
    s.add_argument("--model", help="base model source; default: the one adapter_config.json names")
    s.add_argument("--name", help="model name in the URLs (default: the adapter directory's name)")
    s.add_argument("--host", default="0.0.0.0")
    s.add_argument("--port", type=int, default=8080)


def main(argv: list[str] | None = None) -> int:
    # Fewer, larger allocator segments that grow in place: less fragmentation at long sequences
    # (the out-of-memory point is where reserved, not allocated, memory runs out).
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    args = build_parser().parse_args(argv)
    setup_logging(libraries=args.command != "fetch")
    if args.command == "evaluate":
        return cmd_evaluate(args)
    if args.command == "cleanup":
        return cmd_cleanup(args)
    if args.command == "fetch":
        return cmd_fetch(args)
    if args.command == "plan":
        args.config = args.plan_config
        return cmd_plan_safely(args)
    if args.command == "serve":
        return cmd_serve(args)
    if getattr(args, "config_sub", None):
        args.config = args.config_sub
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())
