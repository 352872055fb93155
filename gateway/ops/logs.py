"""Logging that never writes a full ID number, whoever logs it (httpx logs URLs), with
the request id on every line logged while a request is served.

Two formats: ``text`` for a developer's terminal, ``json`` (one object a line:
``time level logger message request_id``, and ``exc_info`` for tracebacks) for a
log collector. Sandbox mode defaults to text, production to JSON.
"""

from __future__ import annotations

import contextvars
import logging
import re
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

# 18-character resident ID numbers wherever they stand (in URLs, messages, tracebacks).
_CERT_NO = re.compile(r"(?<!\d)(\d{6})\d{8}(\d{3}[\dXx])(?![\dXx])")

# The request being served (set by the app for each request; "-" outside one).
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def mask_cert_nos(text: str) -> str:
    return _CERT_NO.sub(lambda m: f"{m[1]}********{m[2][-4:]}", text)


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class MaskingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_cert_nos(super().format(record))


class MaskingJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask_cert_nos(super().format(record))


def formatter(fmt: LogFormat) -> logging.Formatter:
    if fmt == "json":
        return MaskingJsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
    return MaskingFormatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")


def configure(level: int = logging.INFO, fmt: LogFormat = "text") -> None:
    """Send every logger (uvicorn's and httpx's too) through one masking handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(_WithRequestId())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosqlite logs every statement's parameters at DEBUG: names, balances, hashes
    logging.getLogger("aiosqlite").setLevel(max(level, logging.INFO))
    # httpx logs every request to a province at INFO: /metrics and traces count them
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))
