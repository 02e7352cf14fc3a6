"""Status and event messages: one line, bounded, readable."""

from __future__ import annotations

MESSAGE_LIMIT = 2048


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """A readable one-line message from a trainer's message or a log tail: the last meaningful
    line of a Python traceback or of a log, several lines of a message joined with "; "."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if any(line.startswith("Traceback (most recent call last)") for line in lines) or len(lines) > 5:
        return lines[-1]  # a log tail: the exception (or the last thing logged) is at its end
    return "; ".join(lines)
