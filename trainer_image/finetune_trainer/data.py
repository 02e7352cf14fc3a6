"""Dataset reading, curation and the train/validation split.

Everything here runs before any model is loaded, so bad data fails in seconds with one message
naming the file, the line and the field, e.g.::

    train.jsonl:17: field "messages[2].role": expected one of system/user/assistant, got "bot"

The record formats (detection, validation, the trained-on text) are the table in ``formats.py``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune_api.training import DatasetFormat, DatasetSpec

from . import fetched
from .errors import DataError, short
from .formats import FORMATS, FieldProblem, RecordFormat, detect_format, method_hint

# --- reading -------------------------------------------------------------------------------------


@dataclass
class Record:
    line: int
    """1-based line where the record starts in its file."""
    data: dict
    """The validated, normalized record (its format's canonical keys)."""
    key: str = ""
    """Identity for deduplication (hash of the normalized record)."""


def _iter_raw(path: Path, name: str) -> Iterator[tuple[int, Any]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (Windows editors write one) is skipped
    except FileNotFoundError:
        raise DataError(f"{_role_of(name)}{path}: dataset file does not exist") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{_role_of(name)}{path}: cannot read dataset file: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith("["):
        yield from _iter_json_array(text, name)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError.at(name, lineno, None, f"not valid JSON: {exc.msg} (column {exc.colno})") from None


def _role_of(name: str) -> str:
    """``validation file eval.jsonl`` -> ``validation file ``: what the file is, for messages naming its path."""
    return name.rsplit(" ", 1)[0] + " " if " " in name else ""


def _iter_json_array(text: str, name: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    ws = re.compile(r"\s*")

    def line_of(p: int) -> int:
        return text.count("\n", 0, p) + 1

    def skip_ws(p: int) -> int:
        """The position of the first non-whitespace character at or after ``p``."""
        m = ws.match(text, p)
        return m.end() if m else p  # (r"\s*" matches everywhere)

    pos = skip_ws(pos)
    if text.startswith("]", pos):
        return
    while True:
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError.at(name, exc.lineno, None, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        yield line_of(pos), value
        pos = skip_ws(end)
        if text.startswith(",", pos):
            pos = skip_ws(pos + 1)
            continue
        if text.startswith("]", pos):
            rest = text[pos + 1 :].strip()
            if rest:
                raise DataError.at(name, line_of(pos + 1), None, "not valid JSON: extra data after the array")
            return
        raise DataError.at(name, line_of(pos), None, "not valid JSON: expected ',' or ']' between records")


VALIDATION_FILE = "validation file"


def read_records(
    path: str | Path, fmt: DatasetFormat, allowed: AbstractSet[DatasetFormat] | None = None, role: str = ""
) -> tuple[DatasetFormat, list[Record]]:
    """Read and validate every record of a JSONL file or JSON array.

    With ``fmt=auto`` the format is detected from the first record and every record must match it.
    Returns the format and the validated (normalized, not yet deduplicated) records. ``role``
    prefixes the file's name in messages (``validation file eval.jsonl:4: ...``)."""
    path = Path(path)
    name = f"{role} {path.name}" if role else path.name
    records: list[Record] = []
    first_line = None
    for lineno, raw in _iter_raw(path, name):
        if not isinstance(raw, dict):
            raise DataError.at(
                name, lineno, None, f"expected a JSON object per record, got {type(raw).__name__} {short(raw)}"
            )
        detected = detect_format(raw)
        if fmt is DatasetFormat.AUTO:
            if detected is None:
                known = "; ".join(f"{f.name.value}: {sorted(_keys_hint(f))}" for f in FORMATS.values())
                raise DataError.at(
                    name,
                    lineno,
                    None,
                    f"cannot tell the record format from keys {sorted(raw)} (known formats: {known})",
                )
            if allowed is not None and detected not in allowed:
                raise DataError.at(
                    name,
                    lineno,
                    None,
                    (
                        f"records are in {detected.value!r} format, which this method cannot train on "
                        f"(it takes {', '.join(sorted(a.value for a in allowed))}){_hint(detected, allowed)}"
                    ),
                )
            fmt, first_line = detected, lineno
        elif first_line is not None and detected is not None and detected is not fmt:
            _refuse_other_format(name, lineno, raw, detected, fmt, first_line)
        if first_line is None:
            first_line = lineno
        spec = FORMATS[fmt]
        try:
            data = spec.validate(raw)
        except FieldProblem as p:
            if detected is not None and detected is not fmt and p.problem == "missing":
                raise DataError.at(
                    name,
                    lineno,
                    p.field,
                    f"missing (this record looks like {detected.value!r} data, but the dataset is {fmt.value!r})",
                ) from None
            raise DataError.at(name, lineno, p.field, p.problem) from None
        records.append(Record(lineno, data, _key(data)))
    if fmt is DatasetFormat.AUTO:
        raise DataError(f"{name}: the dataset has no records")
    return fmt, records


def _refuse_other_format(
    name: str, lineno: int, raw: dict, detected: DatasetFormat, fmt: DatasetFormat, first_line: int
) -> None:
    """A record that looks like another format: a record of the dataset's format missing a field
    (it shares keys with it) is named as such; a record of another layout is "mixed formats"."""
    try:
        FORMATS[fmt].validate(raw)
        return  # it is a valid record of the dataset's format, with more keys
    except FieldProblem as p:
        if p.problem == "missing" and set(raw) & set(_keys_hint(FORMATS[fmt])):
            raise DataError.at(name, lineno, p.field, f"missing (every {fmt.value} record needs it)") from None
    raise DataError.at(
        name,
        lineno,
        None,
        (
            f"mixed formats: this record looks like {detected.value!r} but the first record "
            f"(line {first_line}) is {fmt.value!r}; every record must use the same format"
        ),
    )


def _hint(detected: DatasetFormat, allowed: AbstractSet[DatasetFormat]) -> str:
    wanted = {FORMATS[a].method for a in allowed}
    return method_hint(detected, wanted.pop()) if len(wanted) == 1 else ""


def _keys_hint(f: RecordFormat) -> list[str]:
    return list(json.loads(f.example))


def _key(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


# --- curation and split --------------------------------------------------------------------------


@dataclass
class CurationReport:
    """What curation did; reported in the log, metrics.json and eval_report.md."""

    format: str = ""
    records_read: int = 0
    short_dropped: int = 0
    duplicates_dropped: int = 0
    usable: int = 0
    train_records: int = 0
    validation_records: int = 0
    validation_source: str = "split"
    validation_read: int = 0
    validation_short_dropped: int = 0
    validation_duplicates_dropped: int = 0
    validation_overlap_removed: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    """Method-specific counts (e.g. truncated examples)."""

    def to_json(self) -> dict:
        d = asdict(self)
        out = {_camel(k): v for k, v in d.items() if k != "extra"}
        out.update(self.extra)
        return out

    def summary(self) -> str:
        s = (
            f"{self.records_read} records read ({self.format}), {self.short_dropped} empty/too short and "
            f"{self.duplicates_dropped} duplicates dropped, {self.usable} usable: {self.train_records} train / "
            f"{self.validation_records} validation"
        )
        if self.validation_source == "file":
            s += (
                f" (validation file: {self.validation_read} read, {self.validation_short_dropped} short and "
                f"{self.validation_duplicates_dropped} duplicates dropped, "
                f"{self.validation_overlap_removed} also in train removed)"
            )
        return s


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def curate(
    records: list[Record], fmt: DatasetFormat, min_chars: int, deduplicate: bool
) -> tuple[list[Record], int, int]:
    """Drop records whose trained-on text is shorter than ``min_chars`` and exact duplicates (first kept)."""
    spec = FORMATS[fmt]
    seen: set[str] = set()
    kept, short_n, dup_n = [], 0, 0
    for r in records:
        if len(spec.trained_text(r.data).strip()) < max(min_chars, 1):
            short_n += 1
            continue
        if deduplicate:
            if r.key in seen:
                dup_n += 1
                continue
            seen.add(r.key)
        kept.append(r)
    return kept, short_n, dup_n


def split(records: list[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """Seeded hold-out of ``fraction`` of the (already deduplicated) records."""
    if fraction <= 0 or len(records) < 2:
        return list(records), []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = min(len(records) - 1, max(1, round(len(records) * fraction)))
    val_idx = set(order[:n_val])
    train = [r for i, r in enumerate(records) if i not in val_idx]
    val = [r for i, r in enumerate(records) if i in val_idx]
    return train, val


@dataclass
class PreparedData:
    format: DatasetFormat
    train: list[Record]
    validation: list[Record]
    report: CurationReport
    train_name: str
    validation_name: str
    warnings: list[str] = field(default_factory=list)
    """What the data made the run do that the user may not have meant; reported in the trainer's summary."""


def load_dataset_spec(spec: DatasetSpec, seed: int, allowed: AbstractSet[DatasetFormat] | None = None) -> PreparedData:
    """Read, validate, curate and split the training data (and the validation file, if any)."""
    spec = spec.model_copy(
        update={
            "source": fetched.data_file(spec.source),
            "validation_source": fetched.data_file(spec.validation_source) if spec.validation_source else None,
        }
    )
    fmt, raw = read_records(spec.source, spec.format, allowed)
    kept, short_n, dup_n = curate(raw, fmt, spec.min_chars, spec.deduplicate)
    name = Path(spec.source).name
    report = CurationReport(
        format=fmt.value, records_read=len(raw), short_dropped=short_n, duplicates_dropped=dup_n, usable=len(kept)
    )
    if len(kept) < spec.min_records:
        raise DataError(
            f"{name}: only {len(kept)} usable records ({len(raw)} read, "
            f"{short_n} empty or shorter than minChars={spec.min_chars}, "
            f"{dup_n} duplicates); dataset.minRecords is {spec.min_records}"
        )
    if spec.validation_source:
        vfmt, vraw = read_records(spec.validation_source, fmt, role=VALIDATION_FILE)
        vkept, vshort, vdup = curate(vraw, fmt, spec.min_chars, spec.deduplicate)
        train_keys = {r.key for r in kept}
        validation = [r for r in vkept if r.key not in train_keys]
        report.validation_source = "file"
        report.validation_read = len(vraw)
        report.validation_short_dropped = vshort
        report.validation_duplicates_dropped = vdup
        report.validation_overlap_removed = len(vkept) - len(validation)
        train = kept
        vname = f"{VALIDATION_FILE} {Path(spec.validation_source).name}"
    else:
        train, validation = split(kept, spec.validation_split, seed)
        vname = f"{name} (held-out {spec.validation_split:.0%})"
    report.train_records, report.validation_records = len(train), len(validation)
    return PreparedData(fmt, train, validation, report, name, vname)
