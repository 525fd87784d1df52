"""The collector file's sources -> readers: `async () -> list[Reading]`, one per source.

A reader keeps its client across polls (a Redfish session is made once and renewed on 401, an
HTTP connection pool is reused) and raises `SOURCE_ERRORS` when its source is down, slow or
answers garbage; the service counts those and backs off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from pipeline.collect import ipmi, prometheus, snmp
from pipeline.collect.config import (
    IpmiSource,
    PrometheusSource,
    RedfishPduSource,
    RedfishSource,
    SnmpSource,
)
from pipeline.collect.readings import Quantity, Reading
from pipeline.collect.redfish import BasicAuth, RedfishClient, RedfishError, SessionAuth
from pipeline.errors import ConfigError

#: What a reader raises when its source fails (down, slow, refused, garbage).
SOURCE_ERRORS: tuple[type[BaseException], ...] = (
    RedfishError,
    prometheus.PrometheusSourceError,
    snmp.SnmpError,
    ipmi.IpmiError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    OSError,
)

Read = Callable[[], Awaitable[list[Reading]]]


@dataclass
class Reader:
    """One configured source, ready to poll."""

    #: For logs and metrics: kind and URL, never credentials.
    label: str
    read: Read
    close: Callable[[], Awaitable[None]]


def reader(
    source: RedfishSource | RedfishPduSource | PrometheusSource | SnmpSource | IpmiSource,
) -> Reader:
    """The reader of `source` (credentials are resolved now: a missing one is an error)."""
    if isinstance(source, IpmiSource):
        return _ipmi(source)
    if isinstance(source, PrometheusSource):
        return _prometheus(source)
    if isinstance(source, SnmpSource):
        return _snmp(source)
    client = RedfishClient(
        source.url,
        auth=_auth(source),
        verify=source.verify,
        ca_file=source.ca_file,
        timeout_s=source.timeout_s,
    )
    label = f"{source.kind}:{URL(source.url).origin()}"
    if isinstance(source, RedfishPduSource):
        return Reader(label, lambda: _read_pdu(client, source.pdu), client.close)
    return Reader(label, lambda: _read_chassis(client, source.chassis), client.close)


def _auth(source: RedfishSource | RedfishPduSource) -> BasicAuth | SessionAuth | None:
    creds = source.credentials()
    if source.auth == "none":
        return None
    if creds is None:
        raise ConfigError(f"{source.kind} {source.url}: auth {source.auth} needs credentials")
    return BasicAuth(*creds) if source.auth == "basic" else SessionAuth(*creds)


async def _read_chassis(client: RedfishClient, chassis: str | None) -> list[Reading]:
    if chassis is not None:
        return await client.read(chassis)
    found = await client.discover()
    if not found.chassis:
        raise RedfishError(client.base_url, "no chassis in the service root's Chassis collection")
    return await client.read_chassis(found.chassis[0])


async def _read_pdu(client: RedfishClient, pdu: str | None) -> list[Reading]:
    found = await client.discover()
    paths = [p for p in found.rack_pdus if pdu is None or URL(p).name == pdu]
    if not paths:
        raise RedfishError(client.base_url, f"no rack PDU {pdu or ''} under PowerEquipment")
    return await client.read_pdu(paths[0])


def _prometheus(source: PrometheusSource) -> Reader:
    session: aiohttp.ClientSession | None = None

    def http() -> aiohttp.ClientSession:
        nonlocal session
        if session is None or session.closed:
            session = aiohttp.ClientSession()
        return session

    async def close() -> None:
        if session is not None:
            await session.close()

    if source.url is not None:
        url = source.url
        return Reader(
            f"prometheus:{url}",
            lambda: prometheus.scrape(url, timeout_s=source.timeout_s, session=http()),
            close,
        )
    assert source.server is not None and source.instance is not None  # checked by the config
    server, instance = source.server, source.instance
    return Reader(
        f"prometheus:{server}/{instance}",
        lambda: prometheus.query_server(
            server, instance, timeout_s=source.timeout_s, session=http()
        ),
        close,
    )


def _snmp(source: SnmpSource) -> Reader:
    credentials: snmp.SnmpV2c | snmp.SnmpV3
    if source.version == "2c":
        credentials = snmp.SnmpV2c(source.secret("community") or "")
    else:
        credentials = snmp.SnmpV3(
            user=source.user or "",
            auth_protocol=snmp.AuthProtocol(source.auth_protocol),
            auth_key=source.secret("auth_key"),
            priv_protocol=snmp.PrivProtocol(source.priv_protocol),
            priv_key=source.secret("priv_key"),
            context_name=source.context_name,
        )
    target = snmp.SnmpTarget(
        source.host,
        credentials,
        port=source.port,
        timeout_s=source.timeout_s,
        retries=source.retries,
    )
    label = f"snmp:{target.address}/{source.model}/{source.device}"

    async def read() -> list[Reading]:
        if source.model == "apc":
            return await snmp.read_apc(target, source.device)
        if source.model == "raritan":
            return await snmp.read_raritan(target, source.device, source.inlet)
        mappings = [(o.oid, Quantity(o.quantity), o.scale) for o in source.oids]
        return await snmp.read_generic(target, mappings)

    async def close() -> None:
        return None

    return Reader(label, read, close)


def _ipmi(source: IpmiSource) -> Reader:
    username, password = source.credentials()
    target = ipmi.IpmiTarget(
        source.host,
        username=username,
        password=password,
        port=source.port,
        interface=source.interface,
        timeout_s=source.timeout_s,
        retries=source.retries,
    )

    async def close() -> None:
        return None

    return Reader(f"ipmi:{target.address}", lambda: ipmi.read_dcmi_power(target), close)
