"""Spending records (支出明细) and authorization records (授权记录), page by page.

Spending records are the province's settlements: as beneficiary (the patient),
every settlement of mine, whatever it paid and whoever paid (a settlement shows
the institution my balance, so none may be missing from my records); as
authorizer, those in which my account paid for a relative. Authorization records
are what happened to my bindings: the gateway journals every bind, answer and
unbind it carries, with the channel it came through; a binding made elsewhere (at
a province's own counter) appears by its creation, channel unknown.

Pages are Relay-style: newest first, ``first`` items after the opaque cursor
``after``. A family's records are few, so they are fetched whole and cut here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Generic, TypeVar

from adapters.base import Binding, Party, ProvinceAdapter, Relation, Settlement
from gateway.common.beijing import china_date
from gateway.common.channels import Channel
from gateway.state.store import Store, Tx

MAX_PAGE = 100

T = TypeVar("T")


class Role(enum.Enum):
    AUTHORIZER = "AUTHORIZER"  # what my account paid for relatives
    BENEFICIARY = "BENEFICIARY"  # what was paid for me


class Event(enum.Enum):
    CREATED = "CREATED"
    CONFIRMED = "CONFIRMED"
    DECLINED = "DECLINED"
    UNBOUND = "UNBOUND"
    # ended by itself: a registration (参保关系) moved to another province or ended
    ENDED = "ENDED"


@dataclass(frozen=True, slots=True)
class Filters:
    """Beijing dates, both ends included, and one relative (an ID number)."""

    since: dt.date | None = None
    until: dt.date | None = None
    relative: str | None = None

    def keeps(self, at: dt.datetime, *people: str) -> bool:
        day = china_date(at)
        if self.since is not None and day < self.since:
            return False
        if self.until is not None and day > self.until:
            return False
        return self.relative is None or self.relative in people


@dataclass(frozen=True, slots=True)
class Spending:
    settlement: Settlement
    adapter: ProvinceAdapter

    @property
    def key(self) -> str:
        at = self.settlement.settled_at.astimezone(dt.UTC).isoformat()
        return f"{at}|{self.adapter.code}|{self.settlement.id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRecord:
    seq: int  # the journal's order; 0 for a creation seen only at the province
    province: str
    binding_id: str
    authorizer: Party
    beneficiary: Party
    relation: Relation
    event: Event
    at: dt.datetime
    channel: Channel | None

    @property
    def key(self) -> str:
        at = self.at.astimezone(dt.UTC).isoformat()
        return f"{at}|{self.seq:012d}|{self.province}|{self.binding_id}"


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[tuple[str, T]]  # (cursor, item)
    has_next: bool


def encode_cursor(connection: str, key: str) -> str:
    """An opaque cursor of one connection (a cursor of another is not one of its own)."""
    return base64.urlsafe_b64encode(f"{connection}:{key}".encode()).decode().rstrip("=")


def decode_cursor(connection: str, cursor: str) -> str | None:
    """The key a cursor of ``connection`` stands for; None for anything else."""
    try:
        padded = (cursor + "=" * (-len(cursor) % 4)).encode()
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (ValueError, binascii.Error, UnicodeError):
        return None
    named, _, key = text.partition(":")
    return key if named == connection and key else None


def paginate(
    connection: str,
    items: Sequence[T],
    key: Callable[[T], str],
    first: int,
    after: str | None,
) -> Page[T]:
    """Newest first (by ``key``, descending); ``first`` (at most `MAX_PAGE`) of them
    after the cursor ``after`` (checked by the caller: `decode_cursor`)."""
    first = max(0, min(first, MAX_PAGE))
    ordered = sorted(items, key=key, reverse=True)
    if after is not None:
        mark = decode_cursor(connection, after)
        ordered = [i for i in ordered if mark is not None and key(i) < mark]
    chosen = ordered[:first]
    return Page([(encode_cursor(connection, key(i)), i) for i in chosen], len(ordered) > first)


class Journal:
    """The gateway's record of what it did to bindings."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    async def insert(
        db: Tx,
        binding: Binding,
        province: str,
        event: Event,
        channel: Channel | None,
    ) -> None:
        """Journal an event within the caller's transaction (the outbox's, with the
        province's answer)."""
        await db.execute(
            "INSERT INTO binding_event (province, binding_id, authorizer, authorizer_name,"
            " beneficiary, beneficiary_name, relation, event, at, channel)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                province,
                binding.id,
                binding.authorizer.cert_no,
                binding.authorizer.name,
                binding.beneficiary.cert_no,
                binding.beneficiary.name,
                binding.relation.value,
                event.value,
                dt.datetime.now(dt.UTC).isoformat(),
                None if channel is None else channel.value,
            ),
        )

    async def of(self, cert_no: str) -> list[AuthorizationRecord]:
        async with self._store.transaction() as db:
            rows = await db.fetch(
                "SELECT seq, province, binding_id, authorizer, authorizer_name, beneficiary,"
                " beneficiary_name, relation, event, at, channel FROM binding_event"
                " WHERE authorizer = ? OR beneficiary = ?",
                (cert_no, cert_no),
            )
        return [
            AuthorizationRecord(
                seq=row[0],
                province=row[1],
                binding_id=row[2],
                authorizer=Party(row[3], row[4]),
                beneficiary=Party(row[5], row[6]),
                relation=Relation(row[7]),
                event=Event(row[8]),
                at=dt.datetime.fromisoformat(row[9]),
                channel=None if row[10] is None else Channel(row[10]),
            )
            for row in rows
        ]


def spending(
    cert_no: str,
    role: Role,
    found: Sequence[tuple[Settlement, ProvinceAdapter]],
    filters: Filters,
) -> list[Spending]:
    """``cert_no``'s settlements on their side of ``role``: as the patient, every one
    (the relative a filter names is the one who paid); as an authorizer, those in which
    mutual aid paid from their account."""
    kept = []
    for done, adapter in found:
        payer = done.mutual_aid_payer
        paid = payer is not None and done.mutual_aid_paid > Decimal(0)
        if role is Role.BENEFICIARY:
            mine, others = done.patient.cert_no, [payer.cert_no] if payer and paid else []
        elif payer is not None and paid:
            mine, others = payer.cert_no, [done.patient.cert_no]
        else:
            continue
        if mine == cert_no and filters.keeps(done.settled_at, *others):
            kept.append(Spending(done, adapter))
    return kept


def authorizations(
    cert_no: str,
    journal: Sequence[AuthorizationRecord],
    bindings: Sequence[tuple[Binding, ProvinceAdapter]],
    filters: Filters,
) -> list[AuthorizationRecord]:
    """The journal's records, and a creation for each binding the journal never saw."""
    seen = {(r.province, r.binding_id) for r in journal}
    records = list(journal)
    for binding, adapter in bindings:
        if (adapter.code, binding.id) not in seen:
            records.append(
                AuthorizationRecord(
                    seq=0,
                    province=adapter.code,
                    binding_id=binding.id,
                    authorizer=binding.authorizer,
                    beneficiary=binding.beneficiary,
                    relation=binding.relation,
                    event=Event.CREATED,
                    at=binding.created_at,
                    channel=None,
                )
            )
    return [
        r
        for r in records
        if cert_no in (r.authorizer.cert_no, r.beneficiary.cert_no)
        and filters.keeps(
            r.at, r.beneficiary.cert_no if r.authorizer.cert_no == cert_no else r.authorizer.cert_no
        )
    ]
