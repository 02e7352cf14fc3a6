"""Shared pydantic base: camelCase on the wire, snake_case in Python, unknown fields refused."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonDict


class ApiModel(BaseModel):
    """Base of every API type.

    Field docs are the attribute docstrings (``use_attribute_docstrings``): they become the
    descriptions in the CRD schema and in docs/api.md. One longer than a line is written as a
    parenthesized implicit concatenation, so the description stays one line.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict with camelCase keys, as stored in the cluster."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


OPERATOR_DEFAULT = "x-finetune-operator-default"
ROLLBACK_SAFE_DEFAULT: JsonDict = {OPERATOR_DEFAULT: True}
"""``json_schema_extra`` of a field added after 0.1.0 that every object would otherwise get from the
API server (it defaults a member of an object it defaults, and defaults apply on every read, to
stored objects too). The CRD gives it no server-side default (the models still do), so an older
operator, whose models refuse fields they do not know, still reads every FineTuneJob: during a
`helm upgrade` before its pod is replaced, and after a `helm rollback`."""
