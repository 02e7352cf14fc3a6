"""The forgetting check: domain vs general text, before vs after training (the seed's 2x2 table).

With ``evaluation.generalSource`` set, a causal-LM run (sft, dpo) measures the perplexity of a
general-text JSONL file (``{"text": ...}`` records) with the base model and again with the tuned
model, next to the domain evaluation (the validation set). Fine-tuning should lower the domain
perplexity; a rising general perplexity is catastrophic forgetting. The pipeline puts the table
into ``metrics.json`` (``forgetting``) and ``eval_report.md``.
"""

from __future__ import annotations

import math
from typing import TypedDict


class PerplexityRow(TypedDict):
    """One row of the table: a text set's perplexity (and loss) before and after training."""

    set: str
    perplexityBefore: float | None
    perplexityAfter: float | None
    lossBefore: float | None
    lossAfter: float | None
    perplexityChange: float | None


def _num(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _change(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return (after - before) / before


def forgetting_table(metrics: dict, general_name: str | None = None) -> dict | None:
    """The 2x2 table from the pipeline's metrics (``baseline``/``final`` for the domain set,
    ``generalBaseline``/``generalFinal`` for general text); None without a general set."""
    gb, gf = metrics.get("generalBaseline") or {}, metrics.get("generalFinal") or {}
    if not gb and not gf:
        return None
    db, df = metrics.get("baseline") or {}, metrics.get("final") or {}
    domain = _row("validation", db, df)
    general = _row(general_name or "generalSource", gb, gf)
    return {
        "domain": domain,
        "general": general,
        "verdict": verdict(domain["perplexityChange"], general["perplexityChange"]),
    }


def _row(name: str, before: dict, after: dict) -> PerplexityRow:
    ppl_before, ppl_after = _num(before.get("perplexity")), _num(after.get("perplexity"))
    return {
        "set": name,
        "perplexityBefore": ppl_before,
        "perplexityAfter": ppl_after,
        "lossBefore": _num(before.get("loss")),
        "lossAfter": _num(after.get("loss")),
        "perplexityChange": _change(ppl_before, ppl_after),
    }


def verdict(domain_change: float | None, general_change: float | None, tolerance: float = 0.05) -> str:
    """One line on what the two changes mean."""
    if general_change is None:
        return "general perplexity was not measured before and after"
    dom = f"domain perplexity {domain_change:+.1%}, " if domain_change is not None else ""
    if general_change > tolerance:
        return f"{dom}general perplexity {general_change:+.1%}: the model is forgetting general text"
    if general_change < -tolerance:
        return f"{dom}general perplexity {general_change:+.1%}: general text improved too (no forgetting)"
    return f"{dom}general perplexity {general_change:+.1%}: within {tolerance:.0%}, no measurable forgetting"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:+.1%}"


def report_section(table: dict | None) -> list[str]:
    """Markdown: perplexity on (domain, general) x (before, after)."""
    if not table:
        return []
    d, g = table["domain"], table["general"]
    return [
        "## Forgetting check: domain vs general text (perplexity, lower is better)",
        "",
        "| | before training (base) | after training (tuned) | change |",
        "| --- | --- | --- | --- |",
        (
            f"| domain ({d['set']}) | {_fmt(d['perplexityBefore'])} | {_fmt(d['perplexityAfter'])} | "
            f"{_pct(d['perplexityChange'])} |"
        ),
        (
            f"| general ({g['set']}) | {_fmt(g['perplexityBefore'])} | {_fmt(g['perplexityAfter'])} | "
            f"{_pct(g['perplexityChange'])} |"
        ),
        "",
        f"Verdict: {table['verdict']}.",
        "",
    ]


def apply(metrics: dict, general_name: str | None = None) -> list[str]:
    """Add ``metrics["forgetting"]`` (when a general set was measured) and return its report lines."""
    table = forgetting_table(metrics, general_name)
    if table is None:
        return []
    metrics["forgetting"] = table
    return report_section(table)
