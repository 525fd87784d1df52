"""`LocalKafka` with SASL users: a SASL_PLAINTEXT/PLAIN client listener, PLAINTEXT controller."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.localkafka import LocalKafka, server_properties


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def test_sasl_listener_with_a_plaintext_controller(tmp_path: Path) -> None:
    props = _props(
        server_properties(
            port=19092,
            controller_port=19093,
            log_dir=tmp_path,
            sasl_users={"broker": "b-pw", "alice": "a-pw"},
            sasl_broker_user="broker",
        )
    )
    assert props["listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_PLAINTEXT://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == (
        "SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT"
    )
    assert props["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    assert props["sasl.mechanism.inter.broker.protocol"] == "PLAIN"
    assert props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        'username="broker" password="b-pw" user_broker="b-pw" user_alice="a-pw";'
    )


def test_without_users_nothing_changes(tmp_path: Path) -> None:
    plain = server_properties(port=1, controller_port=2, log_dir=tmp_path)
    assert "sasl" not in plain
    assert plain == server_properties(port=1, controller_port=2, log_dir=tmp_path, sasl_users={})


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ({"al ice": "pw"}, "SASL user name 'al ice'"),
        ({"alice": 'p"w'}, "without quotes"),
        ({"alice": ""}, "must be non-empty"),
    ],
)
def test_unsafe_users_are_refused(users: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        server_properties(port=1, controller_port=2, log_dir=tmp_path, sasl_users=users)


def test_the_broker_logs_in_as_its_own_user(tmp_path: Path) -> None:
    kafka = LocalKafka(tmp_path, sasl_users={"alice": "a-pw"})
    assert kafka.security_protocol == "SASL_PLAINTEXT"
    assert kafka.sasl_users is not None and set(kafka.sasl_users) == {"microdc-broker", "alice"}
    assert kafka.client_options("alice") == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "alice",
        "sasl_plain_password": "a-pw",
    }
    assert LocalKafka(tmp_path).client_options() == {}
