"""What the gateway keeps: the store (`store`, SQLite), the outbox of writes to
provinces (`outbox`), the one write path every write goes through (`writes`: keys
from `keys`, outcomes in `outcome`), the gateway's own writes kept for repeats
(`replays`), the journal of bindings (`records`), JSON for kept values (`codec`),
starting the sandbox world over (`reset`).

Uses `gateway.common`, `gateway.ops` and `adapters.base` (adapters as values: never
reached through `gateway.provinces`)."""
