"""Logging that never writes a full ID number, whoever logs it (httpx logs URLs)."""

from __future__ import annotations

import logging
import re

# 18-character resident ID numbers wherever they stand (in URLs, messages, tracebacks).
_CERT_NO = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx])")


def mask_cert_nos(text: str) -> str:
    return _CERT_NO.sub(lambda m: f"{m[1]}********{m[2][-4:]}", text)


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_cert_nos(super().format(record))


def configure(level: int = logging.INFO) -> None:
    """Send every logger (uvicorn's and httpx's too) through one masking handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(MaskingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosqlite logs every statement's parameters at DEBUG: names, balances, hashes
    logging.getLogger("aiosqlite").setLevel(max(level, logging.INFO))
