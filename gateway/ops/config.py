"""Settings, read once from a TOML file and the environment, then passed in."""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adapters.base import AdapterSettings, Policy, Relation
from gateway.ops.logs import LOG_FORMATS, LogFormat

Mode = Literal["sandbox", "production"]
MODES: tuple[Mode, ...] = ("sandbox", "production")

_ROOT = Path(__file__).resolve().parents[2]  # gateway/ops/config.py: the project
# The playground package (GraphiQL and its assets, built by scripts/install) and
# the synthetic people its personas are drawn from: the sandbox provinces' roster.
PLAYGROUND_DIR = _ROOT / "playground"
ROSTER = _ROOT / "fixtures" / "roster.json"
DOCUMENTS = _ROOT / "documents" / "manifest.json"  # the apps' registered operations

# The documented development secret. Only for the sandbox: override it with
# GONGJI_JWT_SECRET or `[auth] secret` in the config file anywhere else.
DEV_JWT_SECRET = "gongji-sandbox-development-secret-not-for-production"  # noqa: S105


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthSettings:
    secret: str = DEV_JWT_SECRET
    issuer: str = "gongji-sandbox"
    audience: str = "gongji"
    token_ttl_seconds: int = 12 * 3600
    leeway_seconds: int = 30
    # Production: the identity provider's public keys (RS256 or ES256), as a JWKS file
    # or URL. With either, tokens are verified with those keys only, never the secret.
    jwks_file: Path | None = None
    jwks_url: str | None = None

    @property
    def is_development(self) -> bool:
        return self.secret == DEV_JWT_SECRET

    @property
    def asymmetric(self) -> bool:
        return self.jwks_file is not None or self.jwks_url is not None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """``[limits]``: operations per window, e.g. ``per_subject = "60/minute"``; counted for
    every mutation and every diagnosis, per subject (token) and per client address."""

    per_subject: str = "60/minute"
    per_address: str = "300/minute"
    # A GraphQL request as JSON (uploads, multipart, have [kinship]'s limits): the
    # largest document within the token limit, with its variables, is far smaller.
    max_json_bytes: int = 64 * 1024
    # All of a request's header names and values together, and how many there are.
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    # Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed (addresses or
    # networks); none by default: the client address is the connection's.
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_json_bytes", "max_header_bytes", "max_headers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"limits.{name} must be a positive whole number, not {value!r}")
        proxies = self.trusted_proxies
        if isinstance(proxies, str) or not all(isinstance(p, str) for p in proxies):
            raise ValueError("limits.trusted_proxies is a list of addresses or networks")
        object.__setattr__(self, "trusted_proxies", tuple(proxies))


@dataclass(frozen=True, slots=True, kw_only=True)
class KinshipPolicy:
    """The national rules of kinship accounts (亲情账户), as data: ``[kinship]``."""

    max_members: int = 5  # an adder's members, across all channels, pending ones too
    max_adders: int = 2  # adders of one member
    review_age: int = 16  # a member this old or younger needs a document and review
    allowed_relations: frozenset[Relation] = frozenset(
        {
            Relation.SPOUSE,
            Relation.PARENT,
            Relation.CHILD,
            Relation.GRANDPARENT,
            Relation.GRANDCHILD,
            Relation.SIBLING,
        }
    )
    max_documents: int = 3
    max_document_bytes: int = 5 * 1024 * 1024
    review_working_days: tuple[int, int] = (1, 2)
    voucher_ttl_seconds: int = 120

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> KinshipPolicy:
        table = dict(table)
        if "allowed_relations" in table:
            table["allowed_relations"] = frozenset(Relation(r) for r in table["allowed_relations"])
        if "review_working_days" in table:
            table["review_working_days"] = tuple(table["review_working_days"])
        return cls(**table)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the app needs. ``data_dir=None`` keeps all state in memory (tests).

    ``mode="sandbox"`` (the default) serves the playground and its personas and
    may run provinces in-process; ``"production"`` serves the graph only, needs a
    ``base_url`` for every province and a signing secret of its own.
    """

    mode: Mode = "sandbox"
    data_dir: Path | None = Path("var")
    auth: AuthSettings = field(default_factory=AuthSettings)
    # Per province (by its entry-point name); a province absent here, or without
    # a base_url, is served by its in-process sandbox.
    provinces: Mapping[str, AdapterSettings] = field(default_factory=dict)
    # Installed provinces left out by configuration (`enabled = false`).
    disabled: frozenset[str] = frozenset()
    # None: on in sandbox mode, off in production.
    introspection: bool | None = None
    # the registered documents (gateway.edge.documents), and whether others may run
    # (None: yes in sandbox mode, no in production)
    documents: Path = DOCUMENTS
    free_documents: bool | None = None
    playground_dir: Path = PLAYGROUND_DIR
    roster: Path = ROSTER
    kinship: KinshipPolicy = field(default_factory=KinshipPolicy)
    limits: RateLimits = field(default_factory=RateLimits)
    resilience: Resilience = field(default_factory=lambda: Resilience())
    # None: text in sandbox mode, JSON lines in production
    log_format: LogFormat | None = None
    tracing: Tracing = field(default_factory=lambda: Tracing())
    cache: Caching = field(default_factory=lambda: Caching())
    store: StoreSettings = field(default_factory=lambda: StoreSettings())
    subscriptions: Subscriptions = field(default_factory=lambda: Subscriptions())
    # Sandbox mode only: the date whose provincial rules are in force, to show (and
    # test) another era; None: today in Beijing. Production always uses today.
    policy_date: dt.date | None = None

    def __post_init__(self) -> None:
        _mode(self.mode)
        if self.production and self.policy_date is not None:
            raise ValueError(
                "production mode applies the rules in force today: policy_date is for"
                " the sandbox (gongji serve --policy-date) only"
            )
        if self.production:
            if not self.auth.asymmetric:
                raise ValueError(
                    "production mode verifies tokens with the identity provider's public keys:"
                    " set [auth] jwks_file or jwks_url (RS256 or ES256)"
                )
            if self.auth.is_development:
                raise ValueError(
                    "production mode needs a signing secret of its own (it signs kinship"
                    " vouchers): [auth] secret or GONGJI_JWT_SECRET, not the development one"
                )
            if len(self.auth.secret.encode()) < 32:
                raise ValueError("the signing secret must be at least 32 bytes long")
        elif self.auth.asymmetric:
            raise ValueError("sandbox mode signs its own tokens: no jwks_file or jwks_url")
        elif not self.auth.is_development:
            # The playground mints tokens for anyone who asks: with a secret of
            # one's own, a forgotten `mode` would hand out real tokens.
            raise ValueError(
                "a signing secret of your own means a real deployment: set"
                ' mode = "production" (sandbox mode uses the development secret)'
            )

    @property
    def production(self) -> bool:
        return self.mode == "production"

    @property
    def logs_as(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.production else "text"

    @property
    def allows_free_documents(self) -> bool:
        return self.free_documents if self.free_documents is not None else not self.production

    @property
    def allows_introspection(self) -> bool:
        return self.introspection if self.introspection is not None else not self.production

    @classmethod
    def load(
        cls,
        config_file: Path | None = None,
        *,
        data_dir: Path | None = None,
        policy_date: dt.date | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Settings:
        raw: dict[str, Any] = {}
        path = config_file or (
            Path(environ["GONGJI_CONFIG"]) if "GONGJI_CONFIG" in environ else None
        )
        if path is not None:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        auth_raw = dict(raw.get("auth", {}))
        if "GONGJI_JWT_SECRET" in environ:
            auth_raw["secret"] = environ["GONGJI_JWT_SECRET"]
        if "jwks_file" in auth_raw:
            auth_raw["jwks_file"] = Path(auth_raw["jwks_file"])
        chosen_dir = data_dir or environ.get("GONGJI_DATA_DIR") or raw.get("data_dir") or "var"
        policy_date = policy_date or _date("policy_date", raw.get("policy_date"))
        tables = {name: dict(table) for name, table in raw.get("provinces", {}).items()}
        disabled = frozenset(n for n, t in tables.items() if not t.pop("enabled", True))
        playground = dict(raw.get("playground", {}))
        extra: dict[str, Any] = {}
        if "dir" in playground:
            extra["playground_dir"] = Path(playground.pop("dir"))
        if "roster" in playground:
            extra["roster"] = Path(playground.pop("roster"))
        if playground:
            raise ValueError(f"playground: unknown settings {sorted(playground)}")
        store = dict(raw.get("store", {}))
        if environ.get("GONGJI_STORE_URL"):
            store["url"] = environ["GONGJI_STORE_URL"]
        graphql = dict(raw.get("graphql", {}))
        introspection = graphql.get("introspection")
        if introspection is not None and not isinstance(introspection, bool):
            raise ValueError("graphql.introspection must be true or false")
        free = graphql.get("free_documents")
        if free is not None and not isinstance(free, bool):
            raise ValueError("graphql.free_documents must be true or false")
        if free is not None:
            extra["free_documents"] = free
        if "documents" in graphql:
            extra["documents"] = Path(graphql["documents"])
        return cls(
            mode=_mode(environ.get("GONGJI_MODE") or raw.get("mode", "sandbox")),
            introspection=introspection,
            data_dir=Path(chosen_dir),
            auth=AuthSettings(**auth_raw),
            provinces={name: province_settings(name, table) for name, table in tables.items()},
            disabled=disabled,
            kinship=KinshipPolicy.from_table(raw.get("kinship", {})),
            limits=RateLimits(**raw.get("limits", {})),
            resilience=Resilience(**raw.get("resilience", {})),
            log_format=_log_format(
                environ.get("GONGJI_LOG_FORMAT") or raw.get("logging", {}).get("format")
            ),
            tracing=Tracing(**raw.get("tracing", {})),
            cache=Caching(**raw.get("cache", {})),
            store=StoreSettings(**store),
            subscriptions=Subscriptions(**raw.get("subscriptions", {})),
            policy_date=policy_date,
            **extra,
        )


def _date(setting: str, value: object) -> dt.date | None:
    """A date written as TOML writes one (``2025-06-01``) or as its text."""
    if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"{setting} must be a date (YYYY-MM-DD), not {value!r}") from None


def _log_format(value: object) -> LogFormat | None:
    if value is None:
        return None
    for fmt in LOG_FORMATS:
        if value == fmt:
            return fmt
    raise ValueError(f"logging.format must be one of {', '.join(LOG_FORMATS)}, not {value!r}")


def _mode(value: object) -> Mode:
    for mode in MODES:
        if value == mode:
            return mode
    raise ValueError(f"mode must be one of {', '.join(MODES)}, not {value!r}")


_MAY_BE_0 = ("retries", "max_concurrent", "max_per_second")


def province_settings(name: str, table: Mapping[str, Any]) -> AdapterSettings:
    """``[provinces.NAME]`` → `AdapterSettings`.

    ``policy`` overrides fields of the adapter's declared policies; each
    ``[[provinces.NAME.policies]]`` adds a dated policy (a rule change ahead).
    """
    table = dict(table)
    overrides = dict(table.pop("policy", {}))
    extra = [_policy(p) for p in table.pop("policies", [])]
    numbers: dict[str, type[int] | type[float]] = {
        "connect_timeout": float,
        "timeout": float,
        "max_connections": int,
        "retries": int,
        "retry_wait": float,
        "retry_wait_max": float,
        "breaker_threshold": int,
        "breaker_reset": float,
        "max_answer_bytes": int,
        "max_concurrent": int,
        "max_per_second": float,
        "queue_seconds": float,
    }
    unknown = set(table) - {"base_url", *numbers}
    if unknown:
        raise ValueError(f"provinces.{name}: unknown settings {sorted(unknown)}")
    values: dict[str, Any] = {}
    for setting, kind in numbers.items():
        if setting not in table:
            continue
        value = table[setting]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"provinces.{name}.{setting}: a number, not {value!r}")
        if kind is int and value != int(value):
            raise ValueError(f"provinces.{name}.{setting}: a whole number, not {value!r}")
        # retries may be 0 (reads tried once), and the province's limits (no limit);
        # everything else must be above 0
        if value < 0 or (value == 0 and setting not in _MAY_BE_0):
            raise ValueError(f"provinces.{name}.{setting} must be positive, not {value!r}")
        values[setting] = kind(value)
    return AdapterSettings(
        base_url=str(table.get("base_url", "")),
        policy_overrides=overrides,
        extra_policies=tuple(extra),
        **values,
    )


@dataclass(frozen=True, slots=True)
class Caching:
    """``[cache]``: slow-changing facts remembered by the gateway, with their expiry.

    ``civil_record_seconds``: a person's civil record (their relatives), for the
    family screen; binding still asks the province every time. 0 turns it off.
    (Where each person is insured is remembered in the store until a province no
    longer finds them.)
    """

    civil_record_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.civil_record_seconds < 0:
            raise ValueError("cache.civil_record_seconds: 0 (off) or more")


@dataclass(frozen=True, slots=True)
class Subscriptions:
    """``[subscriptions]``: events told as they happen (docs/frontend.md).

    Events are kept ``retention_hours`` for subscribers that come back with a cursor.
    At most ``per_subject`` connections per signed-in person and ``per_address`` per
    client address; at most ``per_connection`` subscriptions on one connection (one
    more is answered with an error). A connection running no subscription for
    ``idle_seconds`` is closed.
    """

    retention_hours: float = 168.0
    per_subject: int = 5
    per_address: int = 50
    per_connection: int = 5
    idle_seconds: float = 300.0
    # Pages on other origins whose WebSocket handshakes are let in (``https://app.example``;
    # ``*``: any). A client with no Origin header (an app, a mini program's runtime) or a
    # page of the gateway's own origin always is: tokens travel in connection_init, never
    # in a cookie, so a page elsewhere cannot act as a signed-in user.
    allowed_origins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("per_subject", "per_address", "per_connection"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"subscriptions.{name}: a whole number, 1 or more")
        if not all(isinstance(o, str) for o in self.allowed_origins):
            raise ValueError("subscriptions.allowed_origins: a list of origins")
        object.__setattr__(self, "allowed_origins", tuple(self.allowed_origins))
        for name in ("retention_hours", "idle_seconds"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"subscriptions.{name}: a number above 0")


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """``[store]``: where the gateway keeps its state (docs/deployment.md).

    ``url`` unset: SQLite in the data directory, for one process (the embedded
    default). ``postgresql://user@host:port/db``: PostgreSQL, shared by every instance
    given the same url (``GONGJI_STORE_URL`` overrides it, so that a password need not
    sit in the file); ``schema`` is where its tables go. ``pool_size`` connections per
    instance. A lease (a write being sent, a transfer driven, a feed being read) lasts
    ``lease_seconds`` unless its holder renews it: an instance that dies leaves its
    leases to expire, and another instance takes the work over. Each instance remembers
    where people are insured for ``location_seconds`` (another instance may learn of a
    move; with SQLite, the one process learns of every move itself).
    """

    url: str | None = None
    schema: str = "public"
    pool_size: int = 10
    lease_seconds: float = 30.0
    location_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.startswith(("postgresql://", "postgres://")):
            raise ValueError("store.url: a postgresql:// url (none: SQLite in the data directory)")
        if not self.schema.isidentifier():
            raise ValueError(f"store.schema: a plain SQL name, not {self.schema!r}")
        if self.pool_size < 1 or self.lease_seconds <= 0 or self.location_seconds < 0:
            raise ValueError(
                "store: pool_size and lease_seconds above 0, location_seconds 0 or more"
            )

    @property
    def shared(self) -> bool:
        return self.url is not None

    def safe_url(self) -> str:
        """The url without its password, for messages and logs."""
        if self.url is None:
            return "sqlite"
        scheme, _, rest = self.url.partition("://")
        who, at, where = rest.rpartition("@")
        return f"{scheme}://{who.partition(':')[0]}{at}{where}"


@dataclass(frozen=True, slots=True)
class Tracing:
    """``[tracing]``: OpenTelemetry traces of each operation and each upstream call.

    ``exporter``: ``"none"`` (the default: no spans are recorded, and the hooks
    cost next to nothing), ``"console"`` (spans printed, for a developer) or
    ``"otlp"`` (sent to ``endpoint`` over OTLP/HTTP; needs the ``otlp`` extra).
    """

    exporter: Literal["none", "console", "otlp"] = "none"
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "gongji"

    def __post_init__(self) -> None:
        if self.exporter not in ("none", "console", "otlp"):
            raise ValueError(f"tracing.exporter: none, console or otlp, not {self.exporter!r}")


@dataclass(frozen=True, slots=True)
class Resilience:
    """``[resilience]``: how the reconciler settles writes whose outcome is unknown.

    Every ``reconcile_interval`` seconds it sends again the writes whose answer
    was lost, and those still pending ``pending_after`` seconds after they were
    recorded (a process that died with them in flight); ``shutdown_grace`` is how
    long a stopping gateway waits for requests in flight. Every
    ``registration_interval`` seconds it reads each province's change feed and ends
    the bindings across provinces of people whose registration moved or ended.
    """

    reconcile_interval: float = 2.0
    pending_after: float = 30.0
    shutdown_grace: float = 20.0
    registration_interval: float = 10.0

    def __post_init__(self) -> None:
        values = (self.reconcile_interval, self.pending_after, self.shutdown_grace)
        if min(*values, self.registration_interval) <= 0:
            raise ValueError("resilience: every setting is a positive number of seconds")


def _policy(table: Mapping[str, Any]) -> Policy:
    table = dict(table)
    effective_from = table.pop("effective_from")
    return Policy(effective_from=effective_from).with_changes(**table)
