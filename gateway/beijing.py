"""Beijing time: China keeps one time zone and no daylight saving, so a "day" (for a
review's working days, an age, a records filter) is a Beijing date."""

from __future__ import annotations

import datetime as dt

CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


def china_date(moment: dt.datetime | None = None) -> dt.date:
    """The Beijing date of ``moment`` (now by default)."""
    return (moment or dt.datetime.now(dt.UTC)).astimezone(CHINA).date()
