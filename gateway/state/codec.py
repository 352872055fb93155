"""The vocabulary's frozen dataclasses as JSON data and back, for what the store keeps
of an outcome (the outbox's answers, replayed local writes).

Handles what the vocabulary is made of: nested dataclasses, enums, `Decimal`
money, datetimes, optional values, a union of enums, sequences (decoded as tuples) and province
adapters (kept by their code; decoding needs the provinces to find them again).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import enum
import types
import typing
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypeVar, Union

from adapters.base import ProvinceAdapter

T = TypeVar("T")


class NotFederated(LookupError):
    """A stored value names a province that is no longer configured."""

    def __init__(self, province: str) -> None:
        super().__init__(f"province {province!r} is not federated")
        self.province = province


def encode(value: Any) -> Any:
    if isinstance(value, ProvinceAdapter):
        return value.code
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    return value


def decode(cls: type[T], data: Any, provinces: Mapping[str, ProvinceAdapter] | None = None) -> T:
    """The inverse of `encode` for the dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    fields = {
        f.name: _decode(hints[f.name], data[f.name], provinces)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in data
    }
    return cls(**fields)


def _decode(hint: Any, value: Any, provinces: Mapping[str, ProvinceAdapter] | None) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) > 1:  # enums that share no value (a refusal's code): the one it is in
            return _one_of(inner, value)
        return _decode(inner[0], value, provinces)
    if origin in (tuple, list, collections.abc.Sequence):
        (inner, *_) = typing.get_args(hint)
        return tuple(_decode(inner, v, provinces) for v in value)
    if hint is ProvinceAdapter:
        if provinces is None or value not in provinces:
            raise NotFederated(str(value))
        return provinces[value]
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, provinces)  # type: ignore[arg-type]
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if hint is Decimal:
        return Decimal(value)
    if hint is dt.datetime:
        return dt.datetime.fromisoformat(value)
    return value


def _one_of(enums: list[Any], value: Any) -> enum.Enum:
    for hint in enums:
        if not (isinstance(hint, type) and issubclass(hint, enum.Enum)):
            raise TypeError(f"cannot decode a union of {enums}")
        try:
            return hint(value)
        except ValueError:
            continue
    raise ValueError(f"{value!r} is none of {[e.__name__ for e in enums]}")
