"""Operations: configuration (`config`), logs (`logs`), traces (`tracing`).

Uses `adapters.base` only: every other room may use this one."""
