"""Reading weighted HTTP headers (``Accept-Language``, ``Accept-Encoding``)."""

from __future__ import annotations


def weighted(header: str | None) -> list[tuple[str, float]]:
    """``"en;q=0.8, zh"`` → ``[("en", 0.8), ("zh", 1.0)]``: tokens lower-cased, with
    their q-values (1 when absent). An item whose q-value does not parse is left out."""
    items = []
    for part in (header or "").split(","):
        token, _, params = part.strip().partition(";")
        token = token.strip().lower()
        if not token:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = -1.0
        if q >= 0:
            items.append((token, q))
    return items
