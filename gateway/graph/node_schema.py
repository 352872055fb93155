"""`node(id:)`: any family link again by its global id, for whoever takes part in it."""

from __future__ import annotations

import strawberry

from gateway.common.auth import REVIEWER
from gateway.common.ids import decode_id
from gateway.graph.kinship_schema import KinshipLinkType, registry_id
from gateway.graph.marks import AUDITED
from gateway.graph.settlement_schema import Settlement
from gateway.graph.types import FamilyLink, Info_, MutualAidBinding
from gateway.rules.kinship import LINK_KIND, LinkStatus
from gateway.rules.mutual_aid import BINDING_KIND
from gateway.rules.settlement import SETTLEMENT_KIND


@strawberry.type
class NodeQueries:
    @strawberry.field(
        description="A binding, kinship link or settlement by its id, if the caller takes part"
        " in it (a reviewer sees kinship requests too); null otherwise, as for an id that"
        " names nothing.",
        metadata=AUDITED,
    )
    async def node(self, info: Info_, id: strawberry.ID) -> FamilyLink | None:
        caller = info.context.signed_in()
        services = info.context.services
        me = caller.cert_no
        personal = not caller.roles  # a staff token acts for its duties only
        if decode_id(id, BINDING_KIND) is not None:
            if not personal:
                return None
            found = await services.mutual_aid.find(me, id)
            return None if found is None else MutualAidBinding.of(found[0], found[1], me)
        if decode_id(id, LINK_KIND) is not None:
            link = await services.kinship.link(registry_id(id))
            if link is None:
                return None
            # a reviewer, only what waits for review (as the queue shows it)
            reviewing = REVIEWER in caller.roles and link.status is LinkStatus.PENDING_REVIEW
            party = personal and me in (link.adder.cert_no, link.member.cert_no)
            if not (party or reviewing):
                return None
            return KinshipLinkType.of(link, me, services.kinship.policy)
        if (decoded := decode_id(id, SETTLEMENT_KIND)) is not None:
            adapter = services.provinces.get(decoded[0])
            if adapter is None or not personal:
                return None
            for done in await adapter.settlements_of([me]):
                # the patient's bill; a payer sees what their account paid in spendingRecords
                if done.id == decoded[1] and done.patient.cert_no == me:
                    return Settlement.of(done, adapter, me, party=True)
        return None
