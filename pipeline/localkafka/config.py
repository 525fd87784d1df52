"""A broker's configuration: `server.properties` (listeners, SASL/PLAIN), cluster ids, ports.

Pure: nothing here starts a process. Paths written into `server.properties` are made absolute,
since the broker runs in its own working directory.
"""

from __future__ import annotations

import base64
import re
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path

from pipeline.localkafka.common import LOOPBACK

#: The listener (and protocol) of a broker started with SASL users.
SASL_LISTENER = "SASL_PLAINTEXT"
_SASL_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, not starting '-'."""
    while True:
        cid = base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode("ascii")
        if not cid.startswith("-"):
            return cid


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct TCP ports that are free on 127.0.0.1 right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind((LOOPBACK, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _jaas_plain(users: Mapping[str, str], broker_user: str) -> str:
    """The JAAS line of a PLAIN listener: the broker's own login, then every user's password."""
    for user, password in users.items():
        if not _SASL_USER.fullmatch(user):
            raise ValueError(f"SASL user name {user!r}: use letters, digits, '.', '_' or '-'")
        if not password or any(c in password for c in '"\\\n\r'):
            raise ValueError(
                f"SASL password of {user!r} must be non-empty, without quotes, "
                "backslashes or newlines"
            )
    if broker_user not in users:
        raise ValueError(f"the broker's SASL user {broker_user!r} is not among the users")
    logins = " ".join(f'user_{user}="{password}"' for user, password in users.items())
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{broker_user}" password="{users[broker_user]}" {logins};'
    )


def server_properties(
    *,
    port: int,
    controller_port: int,
    log_dir: Path,
    node_id: int = 1,
    sasl_users: Mapping[str, str] | None = None,
    sasl_broker_user: str | None = None,
) -> str:
    """`server.properties` of a single combined KRaft node bound to 127.0.0.1 only.

    Static quorum (`controller.quorum.voters`), replication factor 1 for every internal topic,
    no topic auto-creation, and settings that make consumer groups and restarts fast in tests.
    With `sasl_users` (name -> password) clients and the broker itself talk SASL_PLAINTEXT with
    mechanism PLAIN on `port`, the broker logging in as `sasl_broker_user` (default: the first
    user); the controller listener stays PLAINTEXT. `log_dir` is written as an absolute path.
    """
    client = "PLAINTEXT"
    sasl: dict[str, str] = {}
    if sasl_users:
        client = SASL_LISTENER
        broker_user = sasl_broker_user or next(iter(sasl_users))
        sasl = {
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"listener.name.{client.lower()}.plain.sasl.jaas.config": _jaas_plain(
                sasl_users, broker_user
            ),
        }
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{LOOPBACK}:{controller_port}",
        "listeners": f"{client}://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"{client}://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": client,
        "listener.security.protocol.map": f"{client}:{client},CONTROLLER:PLAINTEXT",
        **sasl,
        "log.dirs": str(Path(log_dir).resolve()),  # absolute: the broker runs in its workdir
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a SIGKILL the restarted node must wait for its old broker session to expire
        # (DUPLICATE_BROKER_REGISTRATION until then): 4 s instead of 9 s keeps crash tests quick.
        "broker.session.timeout.ms": "4000",
        "broker.heartbeat.interval.ms": "500",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.check.interval.ms": "300000",
    }
    lines = ["# Written by pipeline.localkafka: one KRaft broker+controller node, loopback only."]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"
