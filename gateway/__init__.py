"""Gongji: one GraphQL graph over the provinces' family-insurance systems.

The gateway is seven rooms; each may use the rooms above it in this list, never one
below, and `adapters.base` (never a province's module):

- `gateway.ops`: configuration, logs, traces.
- `gateway.common`: the values every room speaks: refusal codes and their messages,
  ID numbers, global IDs, channels, the Beijing date, callers and their tokens.
- `gateway.state`: what the gateway keeps (SQLite): the outbox and the one write
  path, replays, the journal.
- `gateway.provinces`: the federated provinces (one adapter each) and the directory
  of who is insured where.
- `gateway.rules`: the rules (pure judges) and the services that apply them:
  mutual aid, settlement, kinship accounts, the family screen, the diagnosis.
- `gateway.graph`: the GraphQL schema, its types and resolvers, and what runs around
  every operation (limits, rate limits, the audit, errors, metrics).
- `gateway.edge`: where the world comes in: the process (`gongji`), the ASGI app and
  its HTTP limits, the playground.

`docs/architecture.md` draws them and follows one binding and one settlement through.
"""
