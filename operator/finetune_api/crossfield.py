"""Cross-field rules written once and read two ways: as the CRD's CEL ``x-kubernetes-validations``
(``Rule.cel``) and as a check of the pydantic models' wire dicts (``check``), so the API server and
the operator's models refuse the same objects with the same message.

A rule is ``when -> then`` over the fields of the object it sits on (``self`` in CEL). Paths are
wire (camelCase) paths relative to that object; a leaf condition on an absent field is false in both
readings (CEL guards it with ``has()``, as the API server needs), so ``Not(...)`` of it is true.
Every ``cel()`` is atomic (a call or parenthesized), so the forms compose without precedence slips.
The Python reading runs on ``ApiModel.to_wire()`` (defaults filled in, unset optionals absent), which
is what the API server's CEL sees after it has applied the schema's defaults.
"""

from __future__ import annotations

import abc
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from .quantity import QUANTITY_PATTERN, parse_quantity

_ABSENT = object()


def lookup(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted wire path, or ``_ABSENT``."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node or node[part] is None:
            return _ABSENT
        node = node[part]
    return node


def _guards(path: str) -> list[str]:
    parts = path.split(".")
    return [f"has(self.{'.'.join(parts[: i + 1])})" for i in range(len(parts))]


def _literal(value: Any) -> str:
    if isinstance(value, str):
        if "'" in value or "\\" in value:
            raise ValueError(f"{value!r}: quote characters are not supported in CEL literals here")
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


class Cond(abc.ABC):
    @abc.abstractmethod
    def cel(self) -> str:
        """This condition as an atomic CEL expression over ``self``."""

    @abc.abstractmethod
    def holds(self, obj: Mapping[str, Any]) -> bool:
        """This condition on a wire dict."""


@dataclasses.dataclass(frozen=True)
class _Leaf(Cond):
    """A condition on the value of one field: false when the field is absent."""

    path: str

    def cel(self) -> str:
        return "(" + " && ".join([*_guards(self.path), self.test(f"self.{self.path}")]) + ")"

    def holds(self, obj: Mapping[str, Any]) -> bool:
        value = lookup(obj, self.path)
        return value is not _ABSENT and self.check(value)

    @abc.abstractmethod
    def test(self, ref: str) -> str: ...

    @abc.abstractmethod
    def check(self, value: Any) -> bool: ...


@dataclasses.dataclass(frozen=True)
class Set(_Leaf):
    """The field is present."""

    def cel(self) -> str:
        guards = _guards(self.path)
        return guards[0] if len(guards) == 1 else "(" + " && ".join(guards) + ")"

    def test(self, ref: str) -> str:
        return "true"

    def check(self, value: Any) -> bool:
        return True


@dataclasses.dataclass(frozen=True)
class Eq(_Leaf):
    value: Any

    def test(self, ref: str) -> str:
        return f"{ref} == {_literal(self.value)}"

    def check(self, value: Any) -> bool:
        return bool(value == self.value)


@dataclasses.dataclass(frozen=True)
class In(_Leaf):
    values: tuple[Any, ...]

    def test(self, ref: str) -> str:
        return f"{ref} in [{', '.join(_literal(v) for v in self.values)}]"

    def check(self, value: Any) -> bool:
        return value in self.values


@dataclasses.dataclass(frozen=True)
class AtLeast(_Leaf):
    minimum: int

    def test(self, ref: str) -> str:
        return f"{ref} >= {self.minimum}"

    def check(self, value: Any) -> bool:
        return bool(value >= self.minimum)


@dataclasses.dataclass(frozen=True)
class StartsWith(_Leaf):
    prefixes: tuple[str, ...]

    def test(self, ref: str) -> str:
        tests = [f"{ref}.startsWith({_literal(p)})" for p in self.prefixes]
        return tests[0] if len(tests) == 1 else "(" + " || ".join(tests) + ")"

    def check(self, value: Any) -> bool:
        return isinstance(value, str) and value.startswith(self.prefixes)


@dataclasses.dataclass(frozen=True)
class Matches(_Leaf):
    """An RE2 search (CEL's ``matches``); the patterns used here mean the same to Python's ``re``."""

    pattern: str

    def test(self, ref: str) -> str:
        return f"{ref}.matches({_literal(self.pattern)})"

    def check(self, value: Any) -> bool:
        return isinstance(value, str) and re.search(self.pattern, value) is not None


@dataclasses.dataclass(frozen=True)
class NonEmpty(_Leaf):
    """The list field has at least one item."""

    def test(self, ref: str) -> str:
        return f"size({ref}) > 0"

    def check(self, value: Any) -> bool:
        return isinstance(value, list) and len(value) > 0


@dataclasses.dataclass(frozen=True)
class Contains(_Leaf):
    """The list field holds ``value``."""

    value: Any

    def test(self, ref: str) -> str:
        return f"{_literal(self.value)} in {ref}"

    def check(self, value: Any) -> bool:
        return isinstance(value, list) and self.value in value


@dataclasses.dataclass(frozen=True)
class OnlyValues(_Leaf):
    """Every item of the list field is one of ``values``."""

    values: tuple[Any, ...]

    def test(self, ref: str) -> str:
        return f"{ref}.all(x, x in [{', '.join(_literal(v) for v in self.values)}])"

    def check(self, value: Any) -> bool:
        return isinstance(value, list) and all(v in self.values for v in value)


@dataclasses.dataclass(frozen=True)
class Distinct(_Leaf):
    """No item of the list field is there twice."""

    def test(self, ref: str) -> str:
        return f"{ref}.all(x, {ref}.exists_one(y, y == x))"

    def check(self, value: Any) -> bool:
        return isinstance(value, list) and len(set(value)) == len(value)


@dataclasses.dataclass(frozen=True)
class IsQuantity(_Leaf):
    """A Kubernetes quantity (CEL's quantity library; the schema's pattern admits only these)."""

    def test(self, ref: str) -> str:
        return f"isQuantity({ref})"

    def check(self, value: Any) -> bool:
        return isinstance(value, str) and re.fullmatch(QUANTITY_PATTERN, value) is not None


@dataclasses.dataclass(frozen=True)
class QuantityBetween(_Leaf):
    minimum: str
    maximum: str

    def test(self, ref: str) -> str:
        return (
            f"quantity({ref}).compareTo(quantity({_literal(self.minimum)})) >= 0"
            f" && quantity({ref}).compareTo(quantity({_literal(self.maximum)})) <= 0"
        )

    def check(self, value: Any) -> bool:
        return parse_quantity(self.minimum) <= parse_quantity(value) <= parse_quantity(self.maximum)


@dataclasses.dataclass(frozen=True)
class QuantityNotAbove(Cond):
    """The quantity at ``path`` does not exceed the one at ``other``. Only as the ``then`` of a rule
    whose ``when`` proves both quantities (CEL reads them unguarded); Python reads it as true when
    either is absent."""

    path: str
    other: str

    def cel(self) -> str:
        return f"(quantity(self.{self.path}).compareTo(quantity(self.{self.other})) <= 0)"

    def holds(self, obj: Mapping[str, Any]) -> bool:
        value, other = lookup(obj, self.path), lookup(obj, self.other)
        return value is _ABSENT or other is _ABSENT or parse_quantity(value) <= parse_quantity(other)


@dataclasses.dataclass(frozen=True)
class NotBelowField(Cond):
    """The number at ``path`` is at least the one at ``other``. Only as the ``then`` of a rule whose
    ``when`` proves ``path`` set (``other`` must have a default); Python reads it as true when either
    is absent."""

    path: str
    other: str

    def cel(self) -> str:
        return f"(self.{self.path} >= self.{self.other})"

    def holds(self, obj: Mapping[str, Any]) -> bool:
        value, other = lookup(obj, self.path), lookup(obj, self.other)
        return value is _ABSENT or other is _ABSENT or bool(value >= other)


@dataclasses.dataclass(frozen=True)
class Empty(Cond):
    """The string field is absent or empty."""

    path: str

    def cel(self) -> str:
        return f"(!{Set(self.path).cel()} || self.{self.path} == '')"

    def holds(self, obj: Mapping[str, Any]) -> bool:
        return lookup(obj, self.path) in (_ABSENT, "")


@dataclasses.dataclass(frozen=True)
class Not(Cond):
    cond: Cond

    def cel(self) -> str:
        return f"!{self.cond.cel()}"

    def holds(self, obj: Mapping[str, Any]) -> bool:
        return not self.cond.holds(obj)


@dataclasses.dataclass(frozen=True)
class All(Cond):
    conds: tuple[Cond, ...]

    def cel(self) -> str:
        return "(" + " && ".join(c.cel() for c in self.conds) + ")"

    def holds(self, obj: Mapping[str, Any]) -> bool:
        return all(c.holds(obj) for c in self.conds)


def both(*conds: Cond) -> All:
    return All(conds)


@dataclasses.dataclass(frozen=True)
class Rule:
    """``when`` implies ``then``, else the object is refused with ``message``."""

    when: Cond
    then: Cond
    message: str
    field: str | None = None
    """The wire path the error is reported on (CEL ``fieldPath``); its value is quoted in Python's message."""
    reason: str = "FieldValueInvalid"

    def cel(self) -> dict[str, str]:
        when = self.when.cond.cel() if isinstance(self.when, Not) else f"!{self.when.cel()}"
        rule = {"rule": f"{when} || {self.then.cel()}", "message": self.message}
        if self.field:
            rule["fieldPath"] = f".{self.field}"
        return {**rule, "reason": self.reason}

    def refusal(self, obj: Mapping[str, Any]) -> str | None:
        """The message when ``obj`` breaks the rule (with the offending value), else None."""
        if not self.when.holds(obj) or self.then.holds(obj):
            return None
        value = lookup(obj, self.field) if self.field else _ABSENT
        return self.message if value is _ABSENT or isinstance(value, (dict, list)) else f"{self.message}; got {value!r}"


def cel(rules: tuple[Rule, ...]) -> list[dict[str, str]]:
    return [r.cel() for r in rules]


def check(rules: tuple[Rule, ...], obj: Mapping[str, Any]) -> None:
    """Raise ValueError with the first broken rule's message (pydantic reports it on the model's field)."""
    for r in rules:
        message = r.refusal(obj)
        if message is not None:
            raise ValueError(message)
