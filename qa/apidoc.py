"""The HTTP API reference, written from the app's OpenAPI schema: `python -m qa.apidoc > docs/API.md`.

docs/API.md is the reference of record; a test fails when it differs from what this module writes,
so the page cannot drift from the service.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .settings import Settings

# The schema is written for a service with a key (so that it shows the bearer scheme); the key
# itself never appears in it.
_KEYED = Settings(api_key="documented")

HEADER = """\
# HTTP API reference

Generated from the service's OpenAPI schema by `python -m qa.apidoc > docs/API.md` (a test fails
when this page is out of date). Its origin is `../shared/CONTRACT.md`: the shapes there stay, and
fields may be added. A running service also serves the schema at `/openapi.json` and an
interactive page at `/docs`.

## Conventions

- Every offset is a Python string index (code points) into the stored article text, end
  exclusive: `article.text[start:end] == text` holds for every answer, context, passage and match.
- Every error is a 4xx (a 5xx only for a fault of the server) with the body
  `{"error": {"code": str, "message": str}}`. A 405 carries `Allow`.
- When `QA_API_KEY` is set, every call but `GET /health` and the page (`/`, `/static/...`) needs
  `Authorization: Bearer <key>`, `/openapi.json` and `/docs` too; without it, or with another
  key: 401 with `WWW-Authenticate: Bearer`.
- Request bodies over `QA_MAX_BODY_BYTES` (10 MB by default) get 413.
- An article id is 1 to 512 characters without control characters; in a path it is URL-encoded
  (`GET /articles/Victoria_(Australia)`, `GET /articles/a%2Fb` for `a/b`).
- Filters (`published_from`, `published_to`, `source`, `article_ids`) are applied inside
  retrieval: a filter that keeps few articles still gets `k` results when they hold that many.
  Dates are `YYYY-MM-DD`, both ends inclusive; an undated article passes no date bound.
- Optional fields of a result (`published`, `source`, `url`) are left out when the article has
  no such value; they are never `null`.
"""


def openapi_schema(settings: Settings = _KEYED) -> dict[str, Any]:
    """The app's OpenAPI schema for `settings`, without loading a model or opening an index."""
    from .api import create_app

    return create_app(_SchemaOnly(settings)).openapi()  # type: ignore[arg-type]


class _SchemaOnly:
    """Stands in for the engine while the schema is built: building it reads the settings and
    calls nothing else, and loading the model only to describe the API would take seconds."""

    def __init__(self, settings: Settings):
        self.settings = settings


def render(schema: dict[str, Any] | None = None) -> str:
    """The reference page (Markdown) of `schema` (default: the service's own)."""
    schema = schema or openapi_schema()
    components = schema.get("components", {}).get("schemas", {})
    lines = [HEADER, "## Endpoints", ""]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            lines += _operation(method, path, operation)
    lines += ["## Shapes", ""]
    for name in sorted(components):
        lines += _shape(name, components[name])
    return "\n".join(lines).rstrip("\n") + "\n"


def _operation(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if operation.get("description"):
        lines += [operation["description"].strip(), ""]
    if operation.get("security"):
        lines += ["Needs the key when `QA_API_KEY` is set.", ""]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required | meaning |", "|---|---|---|---|---|"]
        for p in parameters:
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_cell(_type(p['schema']))} | {'yes' if p.get('required') else 'no'} "
                f"| {_cell(p.get('description') or p['schema'].get('description', ''))} |"
            )
        lines.append("")
    body = operation.get("requestBody")
    if body:
        body_schema = body["content"]["application/json"]["schema"]
        lines += [f"Body (JSON): {_type(body_schema)}", ""]
    lines += ["| status | body | meaning |", "|---|---|---|"]
    for status, response in operation["responses"].items():
        content = response.get("content", {}).get("application/json", {})
        shape = _type(content["schema"]) if content.get("schema") else "-"
        meaning = response.get("description", "")
        if "headers" in response:
            meaning += "; headers: " + ", ".join(f"`{h}`" for h in response["headers"])
        lines.append(f"| {status} | {_cell(shape)} | {_cell(meaning)} |")
    return lines + [""]


def _shape(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f"### {name}", ""]
    if schema.get("description"):
        lines += [_cell(schema["description"]), ""]
    if schema.get("anyOf"):
        return lines + ["One of: " + ", ".join(_type(s) for s in schema["anyOf"]), ""]
    required = set(schema.get("required", ()))
    lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
    for field, spec in schema.get("properties", {}).items():
        lines.append(f"| `{field}` | {_cell(_type(spec))} | {'yes' if field in required else 'no'} | {_cell(spec.get('description', ''))} |")
    if schema.get("additionalProperties") is False:
        lines += ["", "Other fields are refused (400)."]
    return lines + [""]


def _type(schema: dict[str, Any]) -> str:
    """A JSON schema as one short line: type, then its constraints."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{name.lower()})"
    if "anyOf" in schema:
        kinds = [s for s in schema["anyOf"] if s.get("type") != "null"]
        text = " or ".join(_type(s) for s in kinds)
        return text + (" or null" if len(kinds) < len(schema["anyOf"]) else "")
    kind = schema.get("type", "any")
    if kind == "array":
        text = f"array of {_type(schema.get('items', {}))}"
    elif "const" in schema:
        text = json.dumps(schema["const"])
    elif "enum" in schema:
        text = " or ".join(json.dumps(v) for v in schema["enum"])
    else:
        text = kind
    notes = []
    for key, label in (("minimum", ">="), ("maximum", "<="), ("minLength", "length >="), ("maxLength", "length <="),
                       ("minItems", "items >="), ("maxItems", "items <=")):
        if key in schema:
            value = schema[key]
            notes.append(f"{label} {int(value) if float(value).is_integer() else value}")
    if "pattern" in schema:
        notes.append(f"pattern `{schema['pattern']}`")
    if "default" in schema and schema["default"] is not None:
        notes.append(f"default {json.dumps(schema['default'])}")
    return text + (f" ({', '.join(notes)})" if notes else "")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
