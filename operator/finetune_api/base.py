"""Shared pydantic base: camelCase on the wire, snake_case in Python, unknown fields refused."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


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
