"""Resident ID numbers (居民身份证号码, GB 11643-1999) and masking of personal data."""

from __future__ import annotations

import datetime as dt

_EARLIEST_BIRTH = dt.date(1900, 1, 1)
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def check_character(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def is_valid(cert_no: str) -> bool:
    """Whether ``cert_no`` is a well-formed 18-character ID number: length, date, check."""
    if len(cert_no) != 18 or not cert_no[:17].isascii() or not cert_no[:17].isdigit():
        return False
    born = birth_date(cert_no)
    if born is None or not _EARLIEST_BIRTH <= born <= dt.date.today():
        return False
    return cert_no[17].upper() == check_character(cert_no[:17])


def birth_date(cert_no: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(cert_no[6:14], "%Y%m%d").date()
    except ValueError:
        return None


def normalize(cert_no: str) -> str:
    """Trim and upper-case the check character (``x`` and ``X`` are the same number)."""
    return cert_no.strip().upper()


def mask_cert_no(cert_no: str) -> str:
    """``130102197603150016`` → ``130102********0016``."""
    if len(cert_no) <= 10:
        return "*" * len(cert_no)
    return cert_no[:6] + "*" * (len(cert_no) - 10) + cert_no[-4:]


def mask_name(name: str) -> str:
    """``王建国`` → ``王*国``; ``王磊`` → ``王*``."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_phone(phone: str) -> str:
    """``13800000000`` → ``138****0000``."""
    if len(phone) < 8:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def loggable(cert_no: str) -> str:
    """The form of an ID number that may appear in logs."""
    return mask_cert_no(cert_no)
