#!/usr/bin/env python3
"""Rewrite the parts of docs/*.md that restate code, from the code (docs/api.md has its own
generator, hack/gen-api-docs.py; `make docs` runs both).

    python hack/gen-doc-tables.py           # rewrite the generated parts
    python hack/gen-doc-tables.py --check   # exit 1 when one is out of date

A generated part sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->`` (a table on
lines of its own, or a few words inline); everything outside the markers is written by hand.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from finetune_api.protocol import EXIT_CODE_MEANINGS, EXIT_CODE_REASONS, ExitCode
from finetune_operator import config, workqueue

ROOT = Path(__file__).resolve().parents[1]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _default(field: Any, spec: config.Flag) -> str:
    if spec.default_doc:
        return spec.default_doc
    value = field.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return f"`{json.dumps(list(value), separators=(',', ':'))}`"
    if isinstance(value, float):
        return f"{value:g} s"
    return f"`{value}`" if isinstance(value, str) else str(value)


def _flag(spec: config.Flag, kind: Any) -> str:
    if kind is bool and spec.from_env:
        names = [f"--[no-]{spec.flag.removeprefix('--')}"]
    else:
        value = f" {spec.metavar}" if spec.metavar else ""
        names = [spec.flag + value]
    if spec.short:
        names.append(spec.short)
    if spec.choices:
        names[0] += " " + "|".join(spec.choices)
    return ", ".join(f"`{n}`" for n in names)


def operator_flags() -> str:
    """docs/operator.md: every setting of finetune_operator/config.py."""
    rows = ["| Flag | Env | Default | What |", "|---|---|---|---|"]
    for field, spec, kind in config.flags():
        env = ", ".join(f"`{name}`" for name in spec.env_names) or "—"
        rows.append(f"| {_cell(_flag(spec, kind))} | {env} | {_cell(_default(field, spec))} | {_cell(spec.help)} |")
    return "\n".join(rows)


def retry_backoff() -> str:
    """The work queue's retry delays after a failure (workqueue.backoff)."""
    return f"{workqueue.backoff(1):g} s, doubling, up to {workqueue.MAX_BACKOFF:g} s"


def exit_codes() -> str:
    """docs/trainer.md: the trainer's exit codes (finetune_api/protocol.py)."""
    rows = ["| code | `ExitCode` | reason | when |", "| --- | --- | --- | --- |"]
    for code in ExitCode:
        reason = EXIT_CODE_REASONS.get(code, "")
        rows.append(f"| {int(code)} | {code.name} | {reason} | {_cell(EXIT_CODE_MEANINGS[code])} |")
    return "\n".join(rows)


def setting_default(name: str) -> str:
    """One setting's default, as the flags table says it (``default-<field>``)."""
    field, spec, _ = next(f for f in config.flags() if f[0].name == name)
    return _default(field, spec)


PARTS: dict[str, Callable[[], str]] = {
    "operator-flags": operator_flags,
    "retry-backoff": retry_backoff,
    "exit-codes": exit_codes,
    **{f"default-{field.name}": functools.partial(setting_default, field.name) for field, _, _ in config.flags()},
}
DOCS = ("docs/operator.md", "docs/operations.md", "docs/trainer.md")
MARKED = re.compile(r"<!-- generated: ([\w-]+) -->(\n?)(.*?)(\n?)<!-- end: \1 -->", re.S)


def render(text: str) -> str:
    """``text`` with every marked part regenerated: a part that starts on a line of its own (a
    table) keeps its end marker on a line of its own too; an inline part stays inline."""

    def fill(m: re.Match[str]) -> str:
        name, newline = m.group(1), m.group(2)
        if name not in PARTS:
            raise SystemExit(f"unknown generated part {name!r}")
        return f"<!-- generated: {name} -->{newline}{PARTS[name]()}{newline}<!-- end: {name} -->"

    return MARKED.sub(fill, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a generated part is stale")
    args = parser.parse_args()
    stale = []
    for doc in DOCS:
        path = ROOT / doc
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(doc)
            if not args.check:
                path.write_text(new)
                print(f"wrote {doc}")
    if args.check and stale:
        print(f"stale generated parts in {', '.join(stale)}: run `make docs`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
