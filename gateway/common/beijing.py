"""Beijing time: China keeps one time zone and no daylight saving, so a "day" (for a
review's working days, an age, a records filter, a policy's effective date) is a
Beijing date. One rule, declared with the province vocabulary (`adapters.base`)."""

from __future__ import annotations

from adapters.base import CHINA, china_date

__all__ = ["CHINA", "china_date"]
