"""Every record format the trainer reads, in one table (:data:`FORMATS`).

A format is a detector (its keys), a validator that returns the normalized record (raising
:class:`FieldProblem` naming the field), the text that is trained on (for ``minChars``) and the
method that trains on it. All formats live here, whatever method uses them, so detection and
the "use method X for this data" hints never depend on which method modules were imported.
A new layout is one more entry of :data:`FORMATS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from finetune_api.training import DatasetFormat, Method

from .errors import short


class FieldProblem(Exception):
    """A record-level problem; the reader adds the file and line."""

    def __init__(self, field: str | None, problem: str):
        super().__init__(problem)
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class RecordFormat:
    name: DatasetFormat
    method: Method
    """The method that trains on records of this format."""
    detect: Callable[[dict], bool]
    """True when a record's keys say it is in this format (detectors must not overlap)."""
    validate: Callable[[dict], dict]
    """Check types and return the normalized record (raise FieldProblem)."""
    trained_text: Callable[[dict], str]
    """The part that is trained on: answers, completion, output or text (``minChars`` applies to it)."""
    example: str
    """One example line, for messages and docs (its keys are the format's keys)."""


# --- normalization -------------------------------------------------------------------------------

_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """Unify line endings, drop trailing spaces on lines and at both ends, squeeze 3+ newlines to 2.

    Indentation and single spaces are kept (code and tables stay intact)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = _TRAILING_SPACE.sub("\n", text)
    text = _MANY_NEWLINES.sub("\n\n", text)
    return text.strip()


def _text(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise FieldProblem(path, f"expected a string, got {type(value).__name__} {short(value)}")
    return normalize_text(value)


def _str_field(record: dict, key: str, *, required: bool = True, path: str | None = None) -> str | None:
    path = path or key
    if key not in record or record[key] is None:
        if required:
            raise FieldProblem(path, "missing")
        return None
    return _text(record[key], path)


# --- sft: chat, sharegpt, alpaca, prompt-completion, text ----------------------------------------

CHAT_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
SHAREGPT_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}


def _turns(record: dict, key: str, role_key: str, text_key: str, roles: dict[str, str], answer_role: str) -> list[dict]:
    """Validate a list of turns; returns ``[{"role", "content"}]`` with roles mapped through ``roles``."""
    if key not in record:
        raise FieldProblem(key, "missing")
    turns = record[key]
    if not isinstance(turns, list):
        raise FieldProblem(key, f"expected a list of turns, got {type(turns).__name__} {short(turns)}")
    if not turns:
        raise FieldProblem(key, "expected at least one turn, got an empty list")
    out = []
    for i, turn in enumerate(turns):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise FieldProblem(where, f"expected an object with {role_key!r} and {text_key!r}, got {short(turn)}")
        if role_key not in turn:
            raise FieldProblem(f"{where}.{role_key}", "missing")
        role = turn[role_key]
        if not isinstance(role, str) or role not in roles:
            raise FieldProblem(f"{where}.{role_key}", f"expected one of {'/'.join(roles)}, got {short(role)}")
        content = _str_field(turn, text_key, path=f"{where}.{text_key}")
        out.append({"role": roles[role], "content": content})
    if not any(t["role"] == "assistant" for t in out):
        raise FieldProblem(key, f"no {answer_role!r} turn: there is nothing to train on")
    return out


def _answers(record: dict) -> str:
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant")


# --- classification: text + label ----------------------------------------------------------------


def validate_classification(record: dict) -> dict:
    text = _str_field(record, "text")
    if "label" not in record or record["label"] is None:
        raise FieldProblem("label", "missing")
    label = record["label"]
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise FieldProblem("label", f"expected a string (or integer) label, got {type(label).__name__} {short(label)}")
    label = str(label).strip()
    if not label:
        raise FieldProblem("label", "expected a non-empty label, got an empty string")
    return {"text": text, "label": label}


# --- dpo: prompt + chosen + rejected -------------------------------------------------------------

SFT_HINT = "for prompts with only good answers use method sft (prompt/completion or chat records)"
PREFERENCE_ROLES = ("system", "user", "assistant")


def _messages(value: object, path: str, assistant_only: bool) -> list[dict]:
    if not isinstance(value, list) or not value:
        raise FieldProblem(path, f"expected a non-empty list of messages, got {short(value)}")
    out = []
    for i, m in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(m, dict):
            raise FieldProblem(where, f"expected an object with 'role' and 'content', got {short(m)}")
        role = m.get("role")
        if role not in PREFERENCE_ROLES:
            raise FieldProblem(f"{where}.role", f"expected one of {'/'.join(PREFERENCE_ROLES)}, got {short(role)}")
        if assistant_only and role != "assistant":
            raise FieldProblem(f"{where}.role", f"expected 'assistant' (an answer), got {short(role)}")
        if "content" not in m or m["content"] is None:
            raise FieldProblem(f"{where}.content", "missing")
        out.append({"role": role, "content": _text(m["content"], f"{where}.content")})
    return out


def _answer(record: dict, key: str, chat: bool):
    if key not in record or record[key] is None:
        if key == "rejected":
            raise FieldProblem(
                "rejected", f"missing: DPO learns from a rejected answer next to each chosen one; {SFT_HINT}"
            )
        raise FieldProblem(key, "missing")
    value = record[key]
    if chat:
        if isinstance(value, str):
            return [{"role": "assistant", "content": normalize_text(value)}]
        if isinstance(value, dict):
            value = [value]
        return _messages(value, key, assistant_only=True)
    if isinstance(value, (list, dict)):
        raise FieldProblem(
            key, "is a chat message (list), but the prompt is a string; give the prompt as a list of messages too"
        )
    return _text(value, key)


def validate_preference(record: dict) -> dict:
    if "prompt" not in record or record["prompt"] is None:
        raise FieldProblem("prompt", 'missing (preference records are {"prompt", "chosen", "rejected"})')
    chat = isinstance(record["prompt"], list)
    prompt: list[dict] | str
    if chat:
        prompt = _messages(record["prompt"], "prompt", assistant_only=False)
        if prompt[-1]["role"] == "assistant":
            raise FieldProblem(
                f"prompt[{len(prompt) - 1}].role",
                "the prompt ends with an assistant message; it should end with the user turn being answered",
            )
    else:
        prompt = _text(record["prompt"], "prompt")
    return {"prompt": prompt, "chosen": _answer(record, "chosen", chat), "rejected": _answer(record, "rejected", chat)}


def answer_text(answer: str | list[dict]) -> str:
    """A preference answer as text (a list of assistant messages joined by newlines)."""
    return answer if isinstance(answer, str) else "\n".join(m["content"] for m in answer)


def is_chat_preference(record: dict) -> bool:
    return isinstance(record["prompt"], list)


# --- the table -----------------------------------------------------------------------------------

FORMATS: dict[DatasetFormat, RecordFormat] = {
    f.name: f
    for f in (
        RecordFormat(
            name=DatasetFormat.CHAT,
            method=Method.SFT,
            detect=lambda r: "messages" in r,
            validate=lambda r: {"messages": _turns(r, "messages", "role", "content", CHAT_ROLES, "assistant")},
            trained_text=_answers,
            example='{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}',
        ),
        RecordFormat(
            name=DatasetFormat.SHAREGPT,
            method=Method.SFT,
            detect=lambda r: "conversations" in r,
            # Converted to chat messages on the way in.
            validate=lambda r: {"messages": _turns(r, "conversations", "from", "value", SHAREGPT_ROLES, "gpt")},
            trained_text=_answers,
            example='{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}',
        ),
        RecordFormat(
            name=DatasetFormat.ALPACA,
            method=Method.SFT,
            detect=lambda r: "instruction" in r,
            validate=lambda r: {
                "instruction": _str_field(r, "instruction"),
                "input": _str_field(r, "input", required=False) or "",
                "output": _str_field(r, "output"),
            },
            trained_text=lambda r: r["output"],
            example='{"instruction": "Translate to French", "input": "cat", "output": "chat"}',
        ),
        RecordFormat(
            name=DatasetFormat.PROMPT_COMPLETION,
            method=Method.SFT,
            detect=lambda r: "completion" in r,
            validate=lambda r: {"prompt": _str_field(r, "prompt"), "completion": _str_field(r, "completion")},
            trained_text=lambda r: r["completion"],
            example='{"prompt": "2+2=", "completion": "4"}',
        ),
        RecordFormat(
            name=DatasetFormat.TEXT,
            method=Method.SFT,
            detect=lambda r: "text" in r and "label" not in r,
            validate=lambda r: {"text": _str_field(r, "text")},
            trained_text=lambda r: r["text"],
            example='{"text": "Plain text to continue."}',
        ),
        RecordFormat(
            name=DatasetFormat.CLASSIFICATION,
            method=Method.CLASSIFICATION,
            detect=lambda r: "label" in r,
            validate=validate_classification,
            trained_text=lambda r: r["text"],
            example='{"text": "%LINK-3-UPDOWN: Interface Gi0/1, changed state to down", "label": "link-state"}',
        ),
        RecordFormat(
            name=DatasetFormat.PREFERENCE,
            method=Method.DPO,
            detect=lambda r: "chosen" in r or "rejected" in r,
            validate=validate_preference,
            trained_text=lambda r: answer_text(r["chosen"]),
            example=(
                '{"prompt": "Is 10.0.0.1 a private address?", '
                '"chosen": "Yes: 10.0.0.0/8 is RFC 1918 space.", "rejected": "No."}'
            ),
        ),
    )
}

# What data of another method lacks, for "train on it with method sft" hints.
_MISSING_FOR = {Method.DPO: "it has no rejected answers", Method.CLASSIFICATION: "it has no labels"}
_DESCRIBED = {Method.DPO: "preference (prompt/chosen/rejected)", Method.CLASSIFICATION: "text/label"}


def formats_of(method: Method) -> frozenset[DatasetFormat]:
    """The record formats ``method`` trains on."""
    return frozenset(f.name for f in FORMATS.values() if f.method is method)


def detect_format(record: dict) -> DatasetFormat | None:
    matches = [f.name for f in FORMATS.values() if f.detect(record)]
    return matches[0] if len(matches) == 1 else None


def method_hint(detected: DatasetFormat, wanted: Method) -> str:
    """Which method trains on ``detected`` records, for the message refusing them for ``wanted``."""
    owner = FORMATS[detected].method
    if owner is wanted:
        return ""
    if owner is Method.SFT:
        return f"; {_MISSING_FOR.get(wanted, 'it is sft data')}: train on it with method sft"
    return f"; {_DESCRIBED.get(owner, detected.value)} data is trained with method {owner.value}"
