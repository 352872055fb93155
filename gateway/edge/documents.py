"""Trusted documents: the operations the apps ship, registered, and only those run.

A manifest (Apollo's ``persisted-query-manifest.json`` format: ``{"format":
"apollo-persisted-query-manifest", "version": 1, "operations": [{"id", "name", "type",
"body"}]}``) names each registered document by the SHA-256 of its text. A client sends
``documentId`` (``"sha256:<hex>"``, as the GraphQL-over-HTTP persisted documents
appendix has it, or the bare hex) or Apollo's ``extensions.persistedQuery.sha256Hash``
instead of the document; the gateway runs the registered text. An id the manifest does
not have is refused (``PERSISTED_QUERY_NOT_FOUND``) before anything the client wrote is
parsed. Where documents must be trusted (production, unless ``[graphql]
free_documents``), a free-form document runs only if its text is registered, else it is
refused (``DOCUMENT_NOT_TRUSTED``), again before parsing.

`gongji documents` builds the first manifest from the playground's examples and the
operations of README.md and docs/frontend.md, lists it, registers more, and checks
that every document still validates against the schema.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLSchema, OperationDefinitionNode, parse, validate

from gateway.graph.audit import DOCUMENT

FORMAT = "apollo-persisted-query-manifest"


class DocumentRefused(HTTPException):
    """A request naming no registered document: answered with ``code``, never run."""

    def __init__(self, code: str) -> None:
        super().__init__(400, code)
        self.code = code


def document_id(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Operation:
    id: str
    name: str
    type: str  # query, mutation or subscription
    body: str

    @classmethod
    def of(cls, body: str) -> Operation:
        """The document ``body`` (one operation, and its fragments), named by itself."""
        operations = [d for d in parse(body).definitions if isinstance(d, OperationDefinitionNode)]
        if len(operations) != 1:
            raise ValueError("a registered document holds exactly one operation")
        [operation] = operations
        name = operation.name.value if operation.name else ""
        return cls(document_id(body), name, operation.operation.value, body)


class Manifest:
    def __init__(self, operations: Iterable[Operation] = ()) -> None:
        self._by_id = {op.id: op for op in operations}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Any:
        return iter(sorted(self._by_id.values(), key=lambda op: (op.name, op.id)))

    def get(self, identifier: str) -> Operation | None:
        """The document registered under ``identifier`` (``sha256:`` prefix or not)."""
        return self._by_id.get(identifier.removeprefix("sha256:").lower())

    def with_(self, operations: Iterable[Operation]) -> Manifest:
        return Manifest([*self._by_id.values(), *operations])

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text("utf-8"))
        if data.get("format") != FORMAT or data.get("version") != 1:
            raise ValueError(f"{path}: not a {FORMAT}, version 1")
        operations = []
        for entry in data["operations"]:
            operation = Operation.of(entry["body"])
            if entry["id"] != operation.id:
                raise ValueError(f"{path}: {entry.get('name')}: its id is not its body's SHA-256")
            operations.append(operation)
        return cls(operations)

    def dumps(self) -> str:
        operations = [
            {"id": op.id, "name": op.name, "type": op.type, "body": op.body} for op in self
        ]
        return (
            json.dumps(
                {"format": FORMAT, "version": 1, "operations": operations},
                ensure_ascii=False,
                indent=2,
            )
            + "\n"
        )

    def problems(self, schema: GraphQLSchema) -> list[str]:
        """Every registered document that no longer validates against ``schema``."""
        found = []
        for op in self:
            errors = validate(schema, parse(op.body))
            found += [f"{op.name or op.id}: {e.message}" for e in errors]
        return found


def trusted(data: Mapping[str, Any], manifest: Manifest | None, *, free: bool) -> Mapping[str, Any]:
    """A GraphQL request (its JSON object) as it is to run: a registered document's
    text in ``query`` when it names one; `DocumentRefused` when it names one the
    manifest lacks, or (unless ``free``) sends a document that is not registered. The
    registered name of the document named is kept for the request's audit entry (the
    view clears it for each request)."""
    named = data.get("documentId")
    extensions = data.get("extensions")  # (not an object: the view answers a 400 for it)
    persisted = extensions.get("persistedQuery") if isinstance(extensions, Mapping) else None
    if named is None and isinstance(persisted, Mapping):
        named = persisted.get("sha256Hash")
    if named is not None:
        found = None if manifest is None or not isinstance(named, str) else manifest.get(named)
        if found is None:
            raise DocumentRefused("PERSISTED_QUERY_NOT_FOUND")
        DOCUMENT.set(found.name or f"sha256:{found.id}")
        return {**data, "query": found.body}
    if free:
        return data
    query = data.get("query")
    if manifest is None or not isinstance(query, str) or manifest.get(document_id(query)) is None:
        raise DocumentRefused("DOCUMENT_NOT_TRUSTED")
    return data


# -- the first manifest: what the playground and the docs show -----------------------------

_BLOCK = re.compile(r"^```graphql\n(.*?)^```", re.M | re.S)


def shown(root: Path) -> list[Operation]:
    """Every operation the playground's examples and the front-end docs show."""
    bodies = [
        example["query"].strip() + "\n"
        for example in tomllib.loads((root / "playground" / "examples.toml").read_text("utf-8"))[
            "example"
        ]
    ]
    for doc in ("README.md", "docs/frontend.md"):
        bodies += [b.strip() + "\n" for b in _BLOCK.findall((root / doc).read_text("utf-8"))]
    operations: list[Operation] = []
    for body in bodies:
        try:
            operations.append(Operation.of(body))
        except ValueError:
            continue  # a block of fragments, or several operations: not one document
    return operations
