"""The graph: the schema (`schema`) and its types and resolvers (`types`,
`*_schema`), and what runs around every operation: the one walk over a document
(`operation`, `shape`), variables, rate limits (`ratelimit`), fields marked as
audited or limited (`marks`), the audit log (`audit`), the error boundary
(`errors`), metrics, prefetching (`prefetch`), the request context (`context`).

Uses every room but `gateway.edge`."""
