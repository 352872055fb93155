"""The federated provinces: one adapter and one pooled HTTP client each, opened and
closed with the app (`federated`), and the directory of who is insured where
(`directory`: one batched read per province, cached).

Uses `gateway.state`, `gateway.common`, `gateway.ops` and `adapters.base`."""
