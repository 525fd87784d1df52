"""How every Kafka client of the pipeline authenticates: one mapping from settings to clients.

`KafkaSecurity.from_settings(Settings())` reads `kafka_security_protocol` (PLAINTEXT, SSL,
SASL_PLAINTEXT, SASL_SSL), `kafka_sasl_mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),
`kafka_sasl_username`/`_password` and `kafka_ssl_cafile`/`_certfile`/`_keyfile`/`_key_password`.
`client_kwargs` turns it into aiokafka keyword arguments (producer, consumer, admin client) and
`faust_credentials` into Faust's `broker_credentials`; both build the TLS context with
`aiokafka.helpers.create_ssl_context` (hostname checks on). `connect_errors` turns a failed
connection into one `KafkaUnavailableError` line saying whether the address, the protocol or
the credentials look wrong.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from pipeline.config import SaslMechanism, SecurityProtocol
from pipeline.errors import ConfigError, KafkaUnavailableError

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = [
    "KafkaSecurity",
    "client_kwargs",
    "connect_errors",
    "faust_credentials",
    "ssl_context",
]

PROTOCOLS: tuple[str, ...] = get_args(SecurityProtocol)
MECHANISMS: tuple[str, ...] = get_args(SaslMechanism)
#: aiokafka loggers whose connection errors `connect_errors` folds into its one-line message.
_CONNECT_LOGGERS = ("aiokafka", "aiokafka.conn")  # aiokafka.client logs as "aiokafka"


@dataclass(frozen=True)
class KafkaSecurity:
    """Connection security of the Kafka clients; the default is PLAINTEXT without SASL."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ConfigError(
                f"kafka_security_protocol {self.protocol!r} must be one of {', '.join(PROTOCOLS)}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise ConfigError(
                    f"kafka_sasl_mechanism {self.sasl_mechanism!r} must be one of "
                    f"{', '.join(MECHANISMS)}"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError(
                    f"kafka_security_protocol={self.protocol} needs kafka_sasl_username and "
                    "kafka_sasl_password (MICRODC_KAFKA_SASL_USERNAME / _PASSWORD or the config "
                    "file)"
                )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ConfigError("kafka_ssl_keyfile is set without kafka_ssl_certfile")
        if self.uses_ssl:
            for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
                path = getattr(self, name)
                if path is not None and not Path(path).is_file():
                    raise ConfigError(f"kafka_{name} {path} does not exist or is not a file")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        """The security settings of `settings` (validated: raises `ConfigError`)."""
        password = settings.kafka_sasl_password
        key_password = settings.kafka_ssl_key_password
        return cls(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password is not None else None,
            ssl_cafile=settings.kafka_ssl_cafile,
            ssl_certfile=settings.kafka_ssl_certfile,
            ssl_keyfile=settings.kafka_ssl_keyfile,
            ssl_key_password=key_password.get_secret_value() if key_password else None,
        )

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.protocol.endswith("SSL")

    def describe(self) -> str:
        """E.g. `SASL_SSL, SCRAM-SHA-512 as 'alice'` (never the password)."""
        if self.uses_sasl:
            return f"{self.protocol}, {self.sasl_mechanism} as {self.sasl_username!r}"
        return self.protocol


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL (None otherwise); `ConfigError` if a file is bad."""
    if not security.uses_ssl:
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=security.ssl_cafile,
            certfile=security.ssl_certfile,
            keyfile=security.ssl_keyfile,
            password=security.ssl_key_password,
        )
    except (OSError, ssl.SSLError) as exc:
        files = ", ".join(
            f"{name}={path}"
            for name, path in (
                ("kafka_ssl_cafile", security.ssl_cafile),
                ("kafka_ssl_certfile", security.ssl_certfile),
                ("kafka_ssl_keyfile", security.ssl_keyfile),
            )
            if path is not None
        )
        raise ConfigError(f"cannot load the TLS files ({files or 'system CAs'}): {exc}") from exc
    return context


def client_kwargs(security: KafkaSecurity | None) -> dict[str, Any]:
    """aiokafka keyword arguments (producer, consumer, admin) for `security`; None: PLAINTEXT."""
    if security is None or security.protocol == "PLAINTEXT":
        return {}
    kwargs: dict[str, Any] = {"security_protocol": security.protocol}
    context = ssl_context(security)
    if context is not None:
        kwargs["ssl_context"] = context
    if security.uses_sasl:
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        kwargs["sasl_plain_username"] = security.sasl_username
        kwargs["sasl_plain_password"] = security.sasl_password
    return kwargs


def faust_credentials(security: KafkaSecurity | None) -> Any:
    """Faust's `broker_credentials` for `security` (None for PLAINTEXT).

    `SASLCredentials` (SASL_SSL when it carries a TLS context) or `SSLCredentials`; Faust hands
    them to the same aiokafka arguments `client_kwargs` produces.
    """
    if security is None or security.protocol == "PLAINTEXT":
        return None
    from faust.auth import SASLCredentials, SSLCredentials

    context = ssl_context(security)
    if security.uses_sasl:
        return SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    return SSLCredentials(context)


class _Capture(logging.Filter):
    """Holds back aiokafka's connection errors while a client connects (they join our message)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            self.records.append(record)
            return False
        return True


@contextlib.contextmanager
def connect_errors(bootstrap: str, security: KafkaSecurity | None) -> Iterator[None]:
    """Around a client's `start()`: any failure becomes one `KafkaUnavailableError` line.

    aiokafka logs why each bootstrap server failed (refused, authentication failed, ...) and then
    raises a generic "Unable to bootstrap"; the logged reasons are held back here and put into
    the message, with a hint at the setting to check. On success they are logged as usual.
    """
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in _CONNECT_LOGGERS]
    for logger in loggers:
        logger.addFilter(capture)
    try:
        yield
    except (ConfigError, KafkaUnavailableError):
        raise
    except Exception as exc:  # aiokafka raises several unrelated types on connect
        errors = [r.getMessage() for r in capture.records if r.levelno >= logging.ERROR]
        reasons = errors or [str(exc) or type(exc).__name__]
        raise KafkaUnavailableError(_connect_message(bootstrap, security, reasons)) from exc
    else:
        for logger in loggers:
            logger.removeFilter(capture)
        for record in capture.records:
            logging.getLogger(record.name).handle(record)
    finally:
        for logger in loggers:
            logger.removeFilter(capture)


def _connect_message(bootstrap: str, security: KafkaSecurity | None, reasons: list[str]) -> str:
    security = security or KafkaSecurity()
    reason = " ".join(dict.fromkeys(" ".join(r.split()) for r in reasons))  # unique, one line
    lowered = reason.lower()
    if "unsupportedsaslmechanism" in lowered:
        hint = (
            f"the broker does not offer {security.sasl_mechanism}: set kafka_sasl_mechanism to "
            "one it enables"
        )
    elif "authentication" in lowered or "sasl" in lowered:
        hint = (
            "check kafka_sasl_username / kafka_sasl_password and kafka_sasl_mechanism "
            "(MICRODC_KAFKA_SASL_* or the config file)"
        )
    elif "ssl" in lowered or "certificate" in lowered:
        hint = "check kafka_ssl_cafile (the CA that signed the broker) and kafka_security_protocol"
    elif "refused" in lowered or "connect call failed" in lowered or "name or service" in lowered:
        hint = (
            "is a broker running there? Start one with `microdc kafka up` or set --bootstrap / "
            "MICRODC_KAFKA_BOOTSTRAP"
        )
    else:
        hint = "check the address and that kafka_security_protocol matches the broker's listener"
    return f"cannot connect to Kafka at {bootstrap} ({security.describe()}): {reason}; {hint}"
