"""The parts of docs/*.md that restate code are generated from it (hack/gen-doc-tables.py,
`make docs`) and up to date; the reasons the operator reports are all documented."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from finetune_api.protocol import EXIT_CODE_REASONS, FailureReason

ROOT = Path(__file__).resolve().parents[3]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_doc_tables", ROOT / "hack" / "gen-doc-tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()


@pytest.mark.parametrize("doc", GEN.DOCS)
def test_generated_parts_are_up_to_date(doc):
    text = (ROOT / doc).read_text()
    assert GEN.render(text) == text, f"{doc}: a generated part is stale: run `make docs`"


def test_each_table_has_its_place():
    used = {m.group(1) for doc in GEN.DOCS for m in GEN.MARKED.finditer((ROOT / doc).read_text())}
    assert {"operator-flags", "exit-codes", "retry-backoff"} <= used


def test_the_flags_table_names_every_setting_and_variable():
    from finetune_operator import config

    table = GEN.operator_flags()
    for _, spec, _ in config.flags():
        assert f"`{spec.flag}" in table or f"`--[no-]{spec.flag.removeprefix('--')}`" in table, spec.flag
    for name in config.env_names():
        assert f"`{name}`" in table, name


def test_every_failure_reason_is_in_the_troubleshooting_table_with_its_exit_code():
    section = (ROOT / "docs" / "operations.md").read_text().split("## Troubleshooting, reason by reason", 1)[1]
    table = section.split("\n\n", 2)[1]
    for reason in FailureReason:
        rows = [row for row in table.splitlines() if f"`{reason.value}`" in row.split("|")[1]]
        assert rows, f"{reason.value} is not in docs/operations.md's troubleshooting table"
    codes: dict[FailureReason, set[int]] = {}
    for code, reason in EXIT_CODE_REASONS.items():
        codes.setdefault(reason, set()).add(int(code))
    for row in table.splitlines():
        m = re.search(r"`(\w+)` \((?:trainer )?exit (\d+)\)", row.split("|")[1] if "|" in row else "")
        if m:
            assert int(m.group(2)) in codes[FailureReason(m.group(1))], row[:80]
