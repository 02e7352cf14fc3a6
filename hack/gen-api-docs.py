#!/usr/bin/env python3
"""Generate docs/api.md, the FineTuneJob API reference, from the CRD's OpenAPI schema.

    python hack/gen-api-docs.py           # rewrite docs/api.md
    python hack/gen-api-docs.py --check   # exit 1 when docs/api.md is out of date

The CRD (crds/finetune.dev_finetunejobs.yaml) is itself generated from the pydantic models
(`python -m finetune_api.crd --write`), so run that first; `make crd` runs both.
Every field is listed, nested objects get their own section, with type, default, constraints
(enums, ranges, lengths, patterns, immutability) and description; the CEL rules close the page.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "finetune.dev_finetunejobs.yaml"
OUT = ROOT / "docs" / "api.md"

IMMUTABLE_RULE = re.compile(r"^has\(self\.(\w+)\) == has\(oldSelf\.\1\)")


def _cell(text: Any) -> str:
    """One Markdown table cell: a single line, pipes escaped."""
    text = " ".join(str(text).split())
    return text.replace("|", "\\|")


def _code(value: Any) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (dict, list)):
        value = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    text = str(value)
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}".replace("|", "\\|")


def _anchor(path: str) -> str:
    return re.sub(r"[^a-z0-9-]", "", path.lower().replace(".", "").replace("[]", ""))


class Doc:
    def __init__(self, crd: dict[str, Any]) -> None:
        self.crd = crd
        self.version = crd["spec"]["versions"][0]
        self.root = self.version["schema"]["openAPIV3Schema"]
        self.sections: list[tuple[str, dict[str, Any]]] = []  # nested objects found by the last table
        self.immutable = {
            m.group(1)
            for r in self.root["properties"]["spec"].get("x-kubernetes-validations", [])
            if (m := IMMUTABLE_RULE.match(r["rule"]))
        }

    # --- types --------------------------------------------------------------------------------

    def type_of(self, schema: dict[str, Any], path: str) -> str:
        t = schema.get("type")
        if t == "object":
            if "properties" in schema:
                self.sections.append((path, schema))
                return f"[object](#{_anchor(path)})"
            if isinstance(schema.get("additionalProperties"), dict):
                return f"map[string]{self.type_of(schema['additionalProperties'], path + '[*]')}"
            return "object (free-form)"
        if t == "array":
            return f"array of {self.type_of(schema.get('items', {}), path + '[]')}"
        if t == "number":
            return "number"
        if schema.get("x-kubernetes-int-or-string"):
            return "integer or string"
        return t or "any"

    @staticmethod
    def constraints(schema: dict[str, Any]) -> list[str]:
        out: list[str] = []
        if "enum" in schema:
            out.append("one of " + ", ".join(_code(v) for v in schema["enum"]))
        lo, hi = schema.get("minimum"), schema.get("maximum")
        lo_op = ">" if schema.get("exclusiveMinimum") is True else "≥"
        hi_op = "<" if schema.get("exclusiveMaximum") is True else "≤"
        if lo is not None:
            out.append(f"{lo_op} {lo}")
        if hi is not None:
            out.append(f"{hi_op} {hi}")
        for key, label in (
            ("minLength", "length ≥"),
            ("maxLength", "length ≤"),
            ("minItems", "items ≥"),
            ("maxItems", "items ≤"),
            ("minProperties", "entries ≥"),
            ("maxProperties", "entries ≤"),
        ):
            if key in schema:
                out.append(f"{label} {schema[key]}")
        if "pattern" in schema:
            out.append(f"pattern {_code(schema['pattern'])}")
        items = schema.get("items")
        if isinstance(items, dict) and items.get("type") != "object":
            inner = Doc.constraints(items)
            if inner:
                out.append("each item: " + "; ".join(inner))
        if schema.get("x-kubernetes-list-type"):
            keys = schema.get("x-kubernetes-list-map-keys")
            out.append(f"list type {schema['x-kubernetes-list-type']}" + (f" (keys {', '.join(keys)})" if keys else ""))
        return out

    # --- rendering ----------------------------------------------------------------------------

    def table(self, path: str, schema: dict[str, Any]) -> list[str]:
        required = set(schema.get("required", []))
        lines = [
            "| Field | Type | Required | Default | Constraints | Description |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for name, prop in schema.get("properties", {}).items():
            child = f"{path}.{name}"
            kind = self.type_of(prop, child)
            notes = self.constraints(prop)
            if path == "spec" and name in self.immutable:
                notes.append("immutable")
            elif path == "spec":
                notes.append("mutable")
            for rule in prop.get("x-kubernetes-validations", []):
                notes.append(f"rule: {rule['message']}")
            default = _code(prop["default"]) if "default" in prop else ""
            lines.append(
                f"| `{name}` | {kind} | {'yes' if name in required else ''} | {default} | "
                f"{_cell('; '.join(notes))} | {_cell(prop.get('description', ''))} |"
            )
        return lines

    def render(self) -> str:
        spec = self.crd["spec"]
        names = spec["names"]
        group, version = spec["group"], self.version["name"]
        out = [
            "<!-- Generated by `python hack/gen-api-docs.py` from crds/finetune.dev_finetunejobs.yaml. "
            "Do not edit. -->",
            f"# {names['kind']} API reference ({group}/{version})",
            "",
            _cell(self.root.get("description", "")),
            "",
            "| | |",
            "| --- | --- |",
            f"| API version | `{group}/{version}` |",
            f"| Kind | `{names['kind']}` (list: `{names['listKind']}`) |",
            f"| Scope | {spec['scope']} |",
            f"| Plural / singular | `{names['plural']}` / `{names['singular']}` |",
            f"| Short names | {', '.join(f'`{n}`' for n in names.get('shortNames', []))} |",
            f"| Categories | {', '.join(f'`{n}`' for n in names.get('categories', []))} |",
            f"| Subresources | {', '.join(f'`{n}`' for n in self.version.get('subresources', {}))} |",
            "",
            "Types: `integer` and `number` are JSON numbers; `map[string]T` is an object with free keys; "
            "fields without a default are absent unless set. Defaults are applied by the API server.",
            "",
            "## `kubectl get` columns",
            "",
            "| Column | Type | JSONPath | Shown |",
            "| --- | --- | --- | --- |",
        ]
        for col in self.version.get("additionalPrinterColumns", []):
            shown = "with `-o wide`" if col.get("priority", 0) > 0 else "always"
            out.append(f"| {col['name']} | {col['type']} | `{col['jsonPath']}` | {shown} |")
        out.append("")

        # Sections in pre-order: each object's nested objects follow it (spec's tree, then status's).
        for top in ("spec", "status"):
            pending = [(top, self.root["properties"][top])]
            while pending:
                path, schema = pending.pop(0)
                self.sections = []
                out += [f'<a id="{_anchor(path)}"></a>', "", f"## `{path}`", ""]
                if schema.get("description"):
                    out += [_cell(schema["description"]), ""]
                out += self.table(path, schema)
                out.append("")
                pending = self.sections + pending

        spec_fields = list(self.root["properties"]["spec"]["properties"])
        mutable = [f"`{f}`" for f in spec_fields if f not in self.immutable]
        out += [
            "## Validation rules",
            "",
            f"**Immutability:** every `spec` field except {' and '.join(mutable)} is immutable once the "
            f"{names['kind']} exists (a CEL transition rule per field refuses adding, removing or changing it); "
            "to run again with other settings, create a new object.",
            "",
            "Besides the per-field constraints above, the API server enforces these CEL rules "
            "(`x-kubernetes-validations`) on create and update:",
            "",
            "| Applies to | Rule | Message |",
            "| --- | --- | --- |",
        ]
        for path, schema in self._rule_holders(self.root["properties"]["spec"], "spec"):
            for rule in schema.get("x-kubernetes-validations", []):
                if IMMUTABLE_RULE.match(rule["rule"]):
                    continue
                out.append(
                    f"| `{path}{rule.get('fieldPath', '')}` | `{_cell(rule['rule'])}` | {_cell(rule['message'])} |"
                )
        out.append("")
        return "\n".join(out)

    def _rule_holders(self, schema: dict[str, Any], path: str):
        if schema.get("x-kubernetes-validations"):
            yield path, schema
        for name, prop in schema.get("properties", {}).items():
            yield from self._rule_holders(prop, f"{path}.{name}")
        if isinstance(schema.get("items"), dict):
            yield from self._rule_holders(schema["items"], path + "[]")


def render(crd_path: Path = CRD) -> str:
    return Doc(yaml.safe_load(crd_path.read_text())).render()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT.relative_to(ROOT)} is out of date: run `python hack/gen-api-docs.py`", file=sys.stderr)
            return 1
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
