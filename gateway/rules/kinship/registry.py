"""The kinship registry's SQL: links, their documents and the codes shown, in the store.

The rules are not here: an insert is given the check to run (`Registry.insert`), in
the same turn as the write, so that no other write comes between.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from adapters.base import Party, Relation
from gateway.common.channels import Channel
from gateway.common.refusals import Code
from gateway.rules.documents import Document, DocumentKind
from gateway.rules.kinship.links import LIVE, DocumentInfo, KinshipLink, LinkStatus
from gateway.state.events import Kind, raise_event
from gateway.state.store import Store, Tx

_LIVE_SQL = "(" + ", ".join(sorted(f"'{status.value}'" for status in LIVE)) + ")"

# Given the live links' (adder, member) pairs that involve the adder or the member.
Check = Callable[[Sequence[tuple[str, str]]], Code | None]


def _when(value: str | None) -> dt.datetime | None:
    return None if value is None else dt.datetime.fromisoformat(value)


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store

    # -- writing -----------------------------------------------------------------------

    async def insert(
        self, link: KinshipLink, documents: Sequence[Document], check: Check
    ) -> Code | None:
        """``check`` the live links of both and insert, in one transaction that holds both
        people: no race between, whichever instance the other request reaches."""
        async with self._store.transaction() as db:
            # whoever else checks either of them waits until this one is written (another
            # instance on the store included)
            await db.lock(f"kinship:{link.adder.cert_no}", f"kinship:{link.member.cert_no}")
            rows = await db.fetch(
                f"SELECT adder, member FROM kinship_link WHERE status IN {_LIVE_SQL}"  # noqa: S608
                " AND (adder = ? OR member = ?)",
                (link.adder.cert_no, link.member.cert_no),
            )
            live = [(str(a), str(m)) for a, m in rows]
            refusal = check(live)
            if refusal is not None:
                return refusal
            await db.execute(
                "INSERT INTO kinship_link (id, adder, adder_name, member, member_name, relation,"
                " channel, status, created_at, decided_at, decided_by)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    link.id,
                    link.adder.cert_no,
                    link.adder.name,
                    link.member.cert_no,
                    link.member.name,
                    link.relation.value,
                    link.channel.value,
                    link.status.value,
                    link.created_at.isoformat(),
                    link.decided_at.isoformat() if link.decided_at else None,
                    "document check" if link.decided_at else None,
                ),
            )
            if link.status is LinkStatus.PENDING_CONSENT:  # the member's consent waits
                await _raise(db, link, link.status, [(link.member.cert_no, Kind.KINSHIP_REQUESTED)])
            await db.executemany(
                "INSERT INTO kinship_document (link_id, kind, content_type, size, sha256,"
                " recorded_cert_no, recorded_relation, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        link.id,
                        d.kind.value,
                        d.content_type,
                        d.size,
                        d.sha256,
                        d.recorded_cert_no,
                        d.recorded_relation.value,
                        d.content,
                    )
                    for d in documents
                ],
            )
        return None

    async def move(
        self,
        link_id: str,
        expected: LinkStatus | None,
        status: LinkStatus,
        sets: str,
        values: tuple[Any, ...],
        link: KinshipLink | None = None,
        told: Sequence[tuple[str, Kind]] = (),
    ) -> bool:
        """Move a link to ``status`` if it still is ``expected`` (None: any live state),
        setting the columns of ``sets`` (``"col = ?, ..."``, the gateway's own text);
        if it moves, ``told``: the people told of it (`gateway.state.events`), of
        ``link`` as it was."""
        where = f"status IN {_LIVE_SQL}" if expected is None else "status = ?"
        params = () if expected is None else (expected.value,)
        async with self._store.transaction() as db:
            moved = await db.execute(
                f"UPDATE kinship_link SET status = ?, {sets} WHERE id = ? AND {where}",  # noqa: S608
                (status.value, *values, link_id, *params),
            )
            if moved == 1 and link is not None and told:
                await _raise(db, link, status, told)
        return moved == 1

    async def record_use(self, link_id: str, at: dt.datetime, treatment_area: str) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO kinship_use (link_id, at, treatment_area) VALUES (?, ?, ?)",
                (link_id, at.isoformat(), treatment_area),
            )

    # -- reading -----------------------------------------------------------------------

    async def rejected_before(self, adder: str, member: str) -> bool:
        async with self._store.transaction() as db:
            return (
                await db.fetchone(
                    "SELECT 1 FROM kinship_link"
                    " WHERE adder = ? AND member = ? AND status = 'REJECTED'",
                    (adder, member),
                )
                is not None
            )

    async def uses(self, link_id: str) -> list[tuple[dt.datetime, str]]:
        """When a code of the link was shown and where, newest first."""
        async with self._store.transaction() as db:
            rows = await db.fetch(
                "SELECT at, treatment_area FROM kinship_use WHERE link_id = ? ORDER BY id DESC",
                (link_id,),
            )
        return [(dt.datetime.fromisoformat(at), area) for at, area in rows]

    async def link(self, link_id: str) -> KinshipLink | None:
        links = await self._links("l.id = ?", (link_id,))
        return links[0] if links else None

    async def links_of(self, cert_no: str) -> list[KinshipLink]:
        return await self._links("l.adder = ? OR l.member = ?", (cert_no, cert_no))

    async def pending_review(self) -> list[KinshipLink]:
        return await self._links("l.status = 'PENDING_REVIEW'", ())

    async def document_content(self, document_id: int) -> bytes | None:
        async with self._store.transaction() as db:
            row = await db.fetchone(
                "SELECT content FROM kinship_document WHERE id = ?", (document_id,)
            )
        return None if row is None else bytes(row[0])

    async def live_adders(self, members: Sequence[str]) -> dict[str, int]:
        """How many live links each of ``members`` has as a member, in one query."""
        if not members:
            return {}
        marks = ",".join("?" * len(members))
        async with self._store.transaction() as db:
            rows = await db.fetch(
                f"SELECT member, count(*) FROM kinship_link WHERE status IN {_LIVE_SQL}"  # noqa: S608
                f" AND member IN ({marks}) GROUP BY member",
                tuple(members),
            )
        return {str(row[0]): int(row[1]) for row in rows}

    async def _links(self, where: str, params: tuple[str, ...]) -> list[KinshipLink]:
        async with self._store.transaction() as db:  # both statements in one turn
            rows = list(
                await db.fetch(
                    "SELECT id, adder, adder_name, member, member_name, relation, channel,"  # noqa: S608
                    " status, created_at, decided_at, reason, activated_at, ended_at"
                    f" FROM kinship_link l WHERE {where} ORDER BY created_at DESC",
                    params,
                )
            )
            ids = [row[0] for row in rows]
            if not ids:
                return []
            marks = ",".join("?" * len(ids))
            attached = await db.fetch(
                "SELECT link_id, id, kind, content_type, size, sha256, recorded_cert_no,"  # noqa: S608
                f" recorded_relation FROM kinship_document WHERE link_id IN ({marks}) ORDER BY id",
                ids,
            )
        documents: dict[str, list[DocumentInfo]] = {}
        for row in attached:
            info = DocumentInfo(
                id=row[1],
                kind=DocumentKind(row[2]),
                content_type=row[3],
                size=row[4],
                sha256=row[5],
                recorded_cert_no=row[6],
                recorded_relation=Relation(row[7]),
            )
            documents.setdefault(row[0], []).append(info)
        return [
            KinshipLink(
                id=row[0],
                adder=Party(row[1], row[2]),
                member=Party(row[3], row[4]),
                relation=Relation(row[5]),
                channel=Channel(row[6]),
                status=LinkStatus(row[7]),
                created_at=dt.datetime.fromisoformat(row[8]),
                decided_at=_when(row[9]),
                reason=row[10],
                activated_at=_when(row[11]),
                ended_at=_when(row[12]),
                documents=documents.get(row[0], []),
            )
            for row in rows
        ]


async def _raise(
    db: Tx, link: KinshipLink, status: LinkStatus, told: Sequence[tuple[str, Kind]]
) -> None:
    """Tell each of ``told`` that ``link`` is now ``status``, in ``db``'s transaction."""
    facts = {
        "linkId": link.id,
        "status": status.value,
        "relation": link.relation.value,
        "adder": {"certNo": link.adder.cert_no, "name": link.adder.name},
        "member": {"certNo": link.member.cert_no, "name": link.member.name},
    }
    for subject, kind in told:
        await raise_event(db, subject, kind, facts, f"kinship:{link.id}:{status.value}:{subject}")
