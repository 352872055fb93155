"""The working-day calendar a review is promised in."""

from __future__ import annotations

import datetime as dt


def add_working_days(day: dt.date, n: int) -> dt.date:
    """``n`` working days after ``day`` (Monday to Friday; public holidays not known)."""
    while n > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5:
            n -= 1
    return day
