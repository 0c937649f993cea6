"""Property-based fuzzing of every operation in the OpenAPI schema (hypothesis strategies built
from the schema itself; schemathesis needs a newer hypothesis than the pinned 6.27): path, query
and body values both valid and hostile, under every role. The service must never answer 5xx."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import AS_OF, TERMS

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=12)


def _resolve(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = spec
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def from_schema(schema: dict[str, Any], spec: dict[str, Any], hints: dict[str, Any],
                depth: int = 0) -> st.SearchStrategy:
    """Values valid for `schema` (mostly), with `hints` supplying realistic values by pattern."""
    schema = _resolve(schema, spec)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([from_schema(s, spec, hints, depth + 1) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([from_schema(schema | {"type": k}, spec, hints, depth) for k in kind])
    if kind == "string":
        pattern = schema.get("pattern")
        if pattern in hints:
            return hints[pattern] | st.from_regex(pattern, fullmatch=True)
        if schema.get("format") == "date-time":
            return st.sampled_from([AS_OF, "2026-11-15T12:00:00+01:00", "2030-01-01T00:00:00Z"]) | st.text(max_size=30)
        if pattern:
            return st.from_regex(pattern, fullmatch=True)
        return hints.get("text", st.text(max_size=40))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -10), max_value=schema.get("maximum", 10**6))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = schema.get("items", {})
        return st.lists(from_schema(items, spec, hints, depth + 1) if depth < 4 else JSON,
                        min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fixed = {k: from_schema(v, spec, hints, depth + 1) for k, v in props.items() if k in required}
        optional = {k: from_schema(v, spec, hints, depth + 1) for k, v in props.items() if k not in required}
        extra = schema.get("additionalProperties")
        base = st.fixed_dictionaries(fixed, optional=optional)
        if isinstance(extra, dict):
            return st.tuples(base, st.dictionaries(st.text(max_size=10), from_schema(extra, spec, hints, depth + 1),
                                                   max_size=4)).map(lambda t: t[1] | t[0])
        return base
    return JSON


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(path, method) for path, item in spec["paths"].items() for method in item
            if method in ("get", "post", "put", "delete", "patch")]


@pytest.fixture(scope="module")
def spec(client) -> dict[str, Any]:
    return client.get("/openapi.json").json()


def test_the_schema_documents_every_route(spec):
    paths = set(spec["paths"])
    for expected in ("/health", "/ready", "/v1/terms/validate", "/v1/agreements", "/v1/agreements/{address}",
                     "/v1/agreements/{address}/terms", "/v1/agreements/{address}/reports",
                     "/v1/agreements/{address}/payouts", "/v1/agreements/{address}/periods/{period}/evidence",
                     "/v1/agreements/{address}/status", "/v1/agreements/{address}/status/burn",
                     "/v1/agreements/{address}/forecast", "/v1/agreements/{address}/telemetry/{kind}"):
        assert expected in paths


OPERATIONS = [("get", "/health"), ("get", "/ready"), ("post", "/v1/terms/validate"), ("get", "/v1/agreements"),
              ("post", "/v1/agreements"), ("get", "/v1/agreements/{address}"),
              ("put", "/v1/agreements/{address}/terms"), ("get", "/v1/agreements/{address}/reports"),
              ("get", "/v1/agreements/{address}/payouts"),
              ("get", "/v1/agreements/{address}/periods/{period}/evidence"),
              ("get", "/v1/agreements/{address}/status"), ("get", "/v1/agreements/{address}/status/burn"),
              ("get", "/v1/agreements/{address}/forecast"), ("post", "/v1/agreements/{address}/telemetry/{kind}")]


@pytest.mark.parametrize("method,path", OPERATIONS)
def test_no_endpoint_answers_5xx(client, world, spec, method, path):
    assert (path, method) in operations(spec)
    op = spec["paths"][path][method]
    address_pattern = r"^0x[0-9a-fA-F]{40}$"
    hints = {address_pattern: st.sampled_from([world.agreement, world.other, world.vendor, world.customer,
                                               world.agreement.lower(), "0x" + "00" * 20]),
             "text": st.sampled_from([TERMS.read_text(), TERMS.read_text().replace("9000", "90000", 1)])
             | st.text(max_size=40)}
    params = op.get("parameters", [])
    body_schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        who = data.draw(st.sampled_from(["vendor", "customer", "auditor", "other_vendor", None]))
        url = path
        query = {}
        for p in params:
            valid = from_schema(p.get("schema", {}), spec, hints)
            value = data.draw(valid | st.text(max_size=12) if p["in"] == "path" else st.none() | valid)
            if p["in"] == "path":
                url = url.replace("{" + p["name"] + "}", quote(str(value), safe="") or "x")
            elif value is not None:
                query[p["name"]] = value
        kwargs: dict[str, Any] = {"params": query, "headers": world.headers(who)}
        if method in ("post", "put"):
            if path.endswith("{kind}") and data.draw(st.booleans()):
                lines = data.draw(st.lists(st.text(alphabet="ab,:-0123456789TZN\"\n", max_size=30), max_size=5))
                kwargs["content"] = "ts,device_id,state\n" + "\n".join(lines)
                kwargs["headers"] = kwargs["headers"] | {"Content-Type": "text/csv"}
            else:
                rows = st.lists(st.fixed_dictionaries({}, optional={
                    "ts": st.sampled_from(["2026-12-06T10:00:00Z", "bad"]) | st.text(max_size=5),
                    "device_id": st.sampled_from(["N1", "S1", "X"]), "state": st.sampled_from(["available", "x"]),
                    "site_id": st.sampled_from(["north", "nowhere"]), "deployed_at": st.just("2026-12-01T00:00:00Z"),
                    "start": st.just("2026-12-01T00:00:00Z"), "end": st.text(max_size=5),
                    "scope": st.text(max_size=8)}),
                    max_size=4)
                schema_body = from_schema(body_schema, spec, hints) if body_schema else JSON
                kwargs["content"] = json.dumps(data.draw(schema_body | JSON | rows))
                kwargs["headers"] = kwargs["headers"] | {"Content-Type": "application/json"}
        r = client.request(method.upper(), url, **kwargs)
        assert r.status_code < 500, f"{method.upper()} {url} {kwargs} -> {r.status_code} {r.text[:500]}"

    run()
