"""The rules and the services that apply them: family mutual aid (`mutual_aid`, its
pure `judge`), settlement (`settlement`, `judge_bill`), kinship accounts (`kinship`,
`judge_kinship`), the family screen (`family`), why a relative is not bound
(`diagnosis`), uploaded documents (`documents`).

Uses `gateway.provinces`, `gateway.state`, `gateway.common`, `gateway.ops` and
`adapters.base`; never the graph."""
