"""The one mapping from security settings to aiokafka arguments and Faust credentials."""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from pipeline.config import Settings
from pipeline.errors import ConfigError, KafkaUnavailableError
from pipeline.kafka_security import (
    KafkaSecurity,
    client_kwargs,
    connect_errors,
    faust_credentials,
)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A self-signed CA certificate, and a client certificate + key signed by it (PEM)."""
    now = dt.datetime.now(dt.UTC)

    def cert(
        name: str, key: ec.EllipticCurvePrivateKey, issuer: str, signer: ec.EllipticCurvePrivateKey
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=name == issuer, path_length=None), True)
            .sign(signer, hashes.SHA256())
        )

    ca_key, client_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca, client = tmp_path / "ca.pem", tmp_path / "client.pem"
    key = tmp_path / "client.key"
    ca.write_bytes(cert("ca", ca_key, "ca", ca_key).public_bytes(serialization.Encoding.PEM))
    client.write_bytes(
        cert("client", client_key, "ca", ca_key).public_bytes(serialization.Encoding.PEM)
    )
    key.write_bytes(
        client_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"key-pass"),
        )
    )
    return ca, client, key


def test_plaintext_adds_nothing() -> None:
    assert client_kwargs(None) == {}
    assert client_kwargs(KafkaSecurity()) == {}
    assert faust_credentials(None) is None
    assert faust_credentials(KafkaSecurity()) is None


def test_sasl_plaintext() -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="alice", sasl_password="pw")
    assert client_kwargs(security) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "pw",
    }
    credentials = faust_credentials(security)
    assert isinstance(credentials, SASLCredentials)
    assert "pw" not in repr(security) and "pw" not in repr(credentials)


def test_sasl_ssl_with_scram_and_a_ca(tls_files: tuple[Path, Path, Path]) -> None:
    ca, _, _ = tls_files
    security = KafkaSecurity(
        protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password="pw",
        ssl_cafile=ca,
    )
    kwargs = client_kwargs(security)
    context = kwargs.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "ca"),),)]
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "pw",
    }


def test_mutual_tls_loads_the_client_certificate(tls_files: tuple[Path, Path, Path]) -> None:
    ca, cert, key = tls_files
    security = KafkaSecurity(
        protocol="SSL",
        ssl_cafile=ca,
        ssl_certfile=cert,
        ssl_keyfile=key,
        ssl_key_password="key-pass",
    )
    kwargs = client_kwargs(security)
    assert kwargs["security_protocol"] == "SSL"
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    assert isinstance(faust_credentials(security), SSLCredentials)
    wrong = KafkaSecurity(
        protocol="SSL", ssl_certfile=cert, ssl_keyfile=key, ssl_key_password="nope"
    )
    with pytest.raises(ConfigError, match=r"cannot load the TLS files \(kafka_ssl_certfile="):
        client_kwargs(wrong)


@pytest.mark.parametrize(
    "security",
    [
        KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="a", sasl_password="p"),
        KafkaSecurity(
            protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="a",
            sasl_password="p",
        ),
        KafkaSecurity(protocol="SSL"),
    ],
    ids=["sasl_plaintext", "sasl_ssl", "ssl"],
)
def test_faust_gets_the_same_arguments_as_our_clients(security: KafkaSecurity) -> None:
    ours = client_kwargs(security)
    faust = credentials_to_aiokafka_auth(faust_credentials(security))
    assert set(ours) <= set(faust)
    for key, value in ours.items():
        if key == "ssl_context":
            assert isinstance(faust[key], ssl.SSLContext)
        else:
            assert faust[key] == value, key
    assert faust.get("ssl_context") is None or security.uses_ssl


def test_from_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICRODC_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
    monkeypatch.setenv("MICRODC_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")
    monkeypatch.setenv("MICRODC_KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("MICRODC_KAFKA_SASL_PASSWORD", "secret")
    security = KafkaSecurity.from_settings(Settings())
    assert security == KafkaSecurity(
        protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_username="svc",
        sasl_password="secret",
    )
    assert security.describe() == "SASL_PLAINTEXT, SCRAM-SHA-256 as 'svc'"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"protocol": "TLS"}, "kafka_security_protocol 'TLS' must be one of"),
        ({"protocol": "SASL_SSL", "sasl_username": "a"}, "needs kafka_sasl_username and"),
        (
            {"protocol": "SASL_PLAINTEXT", "sasl_mechanism": "GSSAPI", "sasl_username": "a"},
            "kafka_sasl_mechanism 'GSSAPI' must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512",
        ),
        ({"protocol": "SSL", "ssl_cafile": Path("/no/ca.pem")}, "kafka_ssl_cafile /no/ca.pem"),
        ({"ssl_keyfile": Path("k.pem")}, "kafka_ssl_keyfile is set without kafka_ssl_certfile"),
    ],
)
def test_invalid_combinations_are_config_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        KafkaSecurity(**kwargs)  # type: ignore[arg-type]


def test_connect_errors_fold_aiokafkas_logged_reason_into_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_username="alice", sasl_password="x")
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(KafkaUnavailableError) as info,
        connect_errors("10.0.0.1:9092", security),
    ):
        logging.getLogger("aiokafka.conn").warning("Sending username and password in the clear")
        logging.getLogger("aiokafka").error(
            'Unable connect to "10.0.0.1:9092": [Error 58] SaslAuthenticationFailed: '
            "Authentication failed: Invalid username or password"
        )
        raise RuntimeError("Unable to bootstrap from [...]")
    message = str(info.value)
    assert message.startswith(
        "cannot connect to Kafka at 10.0.0.1:9092 (SASL_PLAINTEXT, PLAIN as 'alice'): "
        'Unable connect to "10.0.0.1:9092": [Error 58] SaslAuthenticationFailed'
    )
    assert "check kafka_sasl_username / kafka_sasl_password" in message
    assert "in the clear" not in message and "\n" not in message
    assert not caplog.records  # held back: the message says it all


def test_connect_errors_pass_logs_on_when_the_connection_works(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING), connect_errors("h:1", None):
        logging.getLogger("aiokafka").error('Unable connect to "h:2": refused')
    assert [r.getMessage() for r in caplog.records] == ['Unable connect to "h:2": refused']
    logging.getLogger("aiokafka").error("after")
    assert len(caplog.records) == 2  # the filter is gone


@pytest.mark.parametrize(
    ("reason", "hint"),
    [
        ("[Errno 111] Connect call failed ('127.0.0.1', 1)", "is a broker running there?"),
        ("[Errno -2] Name or service not known", "is a broker running there?"),
        ("Connection at h:1 closed", "kafka_security_protocol matches the broker's listener"),
        ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", "check kafka_ssl_cafile"),
        ("[Error 33] UnsupportedSaslMechanismError: x", "the broker does not offer PLAIN"),
    ],
)
def test_hints(reason: str, hint: str) -> None:
    with pytest.raises(KafkaUnavailableError, match=hint), connect_errors("h:1", None):
        logging.getLogger("aiokafka").error(reason)
        raise OSError("boom")
