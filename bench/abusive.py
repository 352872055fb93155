"""A corpus of abusive requests: each one small to send and, unless the gateway
refuses it cheaply, expensive to answer. Used by the abuse benchmark
(`bench.abuse`) and by the tests that pin what each one is answered
(`tests/test_abuse.py`).

Each entry is a raw request: its body, its content type and its extra headers,
and the ``extensions.code`` it must be refused with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Abuse:
    name: str
    body: bytes
    code: str  # the extensions.code of the refusal
    status: int = 200  # the HTTP status, answered as application/json
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _query(document: str, **extra: object) -> bytes:
    return json.dumps({"query": document, **extra}).encode()


def fragment_chain(links: int, leaf: str = "provinces { code }") -> str:
    """``F0`` spreads ``F1`` twice, which spreads ``F2`` twice...: 2**links leaves."""
    parts = ["query { ...F0 }"]
    parts += [f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(links)]
    parts.append(f"fragment F{links} on Query {{ {leaf} }}")
    return "\n".join(parts)


def fragment_fan(width: int) -> str:
    """``width`` distinct fragments spread side by side, each asking the same field."""
    spreads = " ".join(f"...F{i}" for i in range(width))
    fragments = "\n".join(
        f"fragment F{i} on Query {{ provinces {{ code }} }}" for i in range(width)
    )
    return f"query {{ {spreads} }}\n{fragments}"


def corpus() -> list[Abuse]:
    """The abusive requests, the cheapest to build first."""
    family = "me { family { relative { name } } }"
    introspection = "__schema { types { fields { type { fields { type { fields { name } } } } } } }"
    return [
        Abuse("fragment chain, 18 links", _query(fragment_chain(18)), "TOO_MANY_REPEATS"),
        Abuse("fragment chain, 60 links", _query(fragment_chain(60)), "TOO_MANY_REPEATS"),
        Abuse(
            "fragment chain to __typename, 60 links",
            _query(fragment_chain(60, "__typename")),
            "TOO_MANY_REPEATS",
        ),
        Abuse(
            "75 identical family fields",
            _query("{" + " ".join([family] * 75) + "}"),
            "TOO_MANY_REPEATS",
        ),
        Abuse(
            "190 identical leaves",
            _query("{" + " provinces { code }" * 190 + "}"),
            "TOO_MANY_REPEATS",
        ),
        Abuse("60 fragments side by side", _query(fragment_fan(60)), "TOO_MANY_REPEATS"),
        Abuse(
            "nested introspection",
            _query("{ " + introspection + " }"),
            "GRAPHQL_VALIDATION_FAILED",  # graphql-core's own limit on introspection depth
        ),
        Abuse(
            "a 5,000-digit Int literal",
            _query(
                "{ me { spendingRecords(role: AUTHORIZER, first: " + "9" * 5000 + ") { edges"
                " { node { amount } } } } }"
            ),
            "GRAPHQL_VALIDATION_FAILED",
        ),
        Abuse(
            "a 15 MB string literal",
            _query('{ provinces(x: "' + "a" * 15_000_000 + '") { code } }'),
            "REQUEST_TOO_LARGE",
            status=413,
        ),
        Abuse(
            "a 15 MB comment",
            _query("#" + "a" * 15_000_000 + "\n{ provinces { code } }"),
            "REQUEST_TOO_LARGE",
            status=413,
        ),
        Abuse(
            "variables nested 5,000 deep",
            b'{"query": "query($v: String) { provinces { code } }", "variables": {"v": '
            + b'{"a": ' * 5_000
            + b"1"
            + b"}" * 5_001
            + b"}",
            "BAD_REQUEST",
            status=400,
        ),
        Abuse(
            "64 KiB of headers",
            _query("{ provinces { code } }"),
            "HEADERS_TOO_LARGE",
            status=431,
            headers={f"x-pad-{i}": "a" * 1000 for i in range(64)},
        ),
    ]
