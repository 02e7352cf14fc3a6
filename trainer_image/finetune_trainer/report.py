"""metrics.json, eval_report.md and loss.png."""

from __future__ import annotations

import json
import math
from pathlib import Path


def write_metrics(path: Path, metrics: dict) -> None:
    """Strict JSON: NaN/inf (e.g. a loss over no tokens) become null, not the invalid token NaN."""
    path.write_text(
        json.dumps(_finite(metrics), indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n"
    )


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return str(value)


def plot_losses(path: Path, history: list[dict]) -> None:
    """Train and eval loss over optimizer steps (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss", color="tab:orange")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title("Training and evaluation loss")
    ax.grid(alpha=0.3)
    if train or evals:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _delta(before, after) -> str:
    if before is None or after is None or before == 0:
        return ""
    return f"{(after - before) / before:+.1%}"


def write_eval_report(path: Path, metrics: dict, samples: list[dict], extra: list[str] | None = None) -> None:
    """``extra``: method-specific Markdown lines (e.g. classification tables), placed after "Before and after"."""
    lines = [*_summary(metrics), *_before_and_after(metrics)]
    if extra:
        lines += [""] + list(extra)
    lines += _data(metrics.get("dataset") or {}, metrics.get("sources") or []) + _samples(samples)
    path.write_text("\n".join(lines).rstrip() + "\n")


def _summary(m: dict) -> list[str]:
    return [
        f"# Evaluation report: {m.get('method', 'sft')} on {m.get('model', '')}",
        "",
        f"- Adapter: {m.get('peftType')} r={m.get('loraR')} alpha={m.get('loraAlpha')} on {m.get('targetModules')}",
        f"- Trainable parameters: {m.get('trainableParameters'):,} of {m.get('totalParameters'):,} "
        f"({m.get('trainablePercent', 0):.3f}%)",
        f"- Steps: {m.get('steps')} ({_fmt(m.get('epochs'), 2)} epochs), optimizer {m.get('optimizerUsed')}, "
        f"runtime {_fmt(m.get('trainRuntimeSeconds'), 1)} s, {_fmt(m.get('tokensPerSecond'), 1)} tokens/s, "
        f"peak memory {_fmt((m.get('peakMemoryBytes') or 0) / 2**20, 0)} MiB ({m.get('peakMemoryKind')})",
    ]


def _before_and_after(m: dict) -> list[str]:
    base, final = m.get("baseline") or {}, m.get("final") or {}
    lines = [
        "",
        "## Before and after",
        "",
        "| set | metric | base model | tuned model | change |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, label in (("loss", "eval loss"), ("perplexity", "perplexity"), ("accuracy", "accuracy")):
        if key in base or key in final:
            lines.append(
                f"| validation | {label} | {_fmt(base.get(key))} | {_fmt(final.get(key))} | "
                f"{_delta(base.get(key), final.get(key))} |"
            )
    gb, gf = m.get("generalBaseline") or {}, m.get("generalFinal") or {}
    for key, label in (("loss", "loss"), ("perplexity", "perplexity")):
        if key in gb or key in gf:
            lines.append(
                f"| general text (forgetting check) | {label} | {_fmt(gb.get(key))} | {_fmt(gf.get(key))} | "
                f"{_delta(gb.get(key), gf.get(key))} |"
            )
    if not base:
        lines += ["", "Baseline evaluation was off (`evaluation.baseline: false`) or there was no validation data."]
    return lines


def _data(c: dict, sources: list[dict]) -> list[str]:
    lines = [
        "",
        "## Data",
        "",
        f"- Format: {c.get('format')}; records read: {c.get('recordsRead')}; "
        f"empty/too short dropped: {c.get('shortDropped')}; "
        f"duplicates dropped: {c.get('duplicatesDropped')}; usable: {c.get('usable')}",
        f"- Train: {c.get('trainRecords')}; validation: {c.get('validationRecords')} ({c.get('validationSource')})",
    ]
    for src in sources:
        at = f" at {src['revision']} (commit {src.get('commit')})" if src.get("revision") else ""
        lines.append(
            f"- {src['field']}: {src['source']}{at}, {src.get('sizeBytes')} bytes, sha256 {src.get('sha256')} "
            f"(checked with {src.get('verifiedWith')})"
        )
    if c.get("validationSource") == "file":
        lines.append(
            f"- Validation file: {c.get('validationRead')} read, "
            f"{c.get('validationOverlapRemoved')} also in the training data removed"
        )
    for k in ("truncated", "droppedNoTrainedTokens"):
        if c.get(k):
            lines.append(f"- {k}: {c[k]}")
    return lines


def _samples(samples: list[dict]) -> list[str]:
    if not samples:
        return []
    lines = ["", "## Sample generations (greedy, held-out prompts)", ""]
    for i, s in enumerate(samples, 1):
        lines += [
            f"### Sample {i}",
            "",
            "**Prompt**",
            "",
            _block(s["prompt"]),
            "",
            "| reference | base model | tuned model |",
            "| --- | --- | --- |",
            f"| {_cell(s.get('reference'))} | {_cell(s.get('base'))} | {_cell(s.get('tuned'))} |",
            "",
        ]
    return lines


def _block(text: str) -> str:
    return "```text\n" + text.replace("```", "'''") + "\n```"


def _cell(text: str | None) -> str:
    if text is None:
        return ""
    return text.replace("|", "\\|").replace("\n", "<br>")[:1000]
