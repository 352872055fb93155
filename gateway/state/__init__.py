"""What the gateway keeps: the store (`store`, the interface; `sqlite` for one process,
`postgres` shared by several instances; `backend` opens the one the settings name;
`migrations` make their tables), who holds which work across instances (`leases`),
the rate limits' windows in a shared store (`windows`), the outbox of writes to
provinces (`outbox`), the one write path every write goes through (`writes`: keys
from `keys`, outcomes in `outcome`), the gateway's own writes kept for repeats
(`replays`), the journal of bindings (`records`), JSON for kept values (`codec`),
starting the sandbox world over (`reset`).

Uses `gateway.common`, `gateway.ops` and `adapters.base` (adapters as values: never
reached through `gateway.provinces`)."""
