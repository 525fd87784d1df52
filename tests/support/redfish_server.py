"""A small real Redfish service on 127.0.0.1 serving a copy of a DMTF mockup, for collector tests.

It serves `/redfish/v1/A/B` from `A/B/index.json` of a copy of the mockup (never the shared
fixtures), with basic and session auth like a BMC (the service root is open, everything else
401 without credentials), optional TLS, and hooks: `set_reading` rewrites an excerpt's
`Reading` between polls, `drop_sessions` forgets every token (a BMC reboot or session timeout),
`slow` delays a path, `garbage` serves raw bytes for a path. Runs its own event loop in a
thread, so the client under test can use `asyncio.run` in the test's thread.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path("/work/shared/fixtures/redfish")
SESSIONS = "/redfish/v1/SessionService/Sessions"


def self_signed_cert(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for `host` (also its own CA): (cert.pem, key.pem) in `folder`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test BMC")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class RedfishServer:
    """A mockup tree served over HTTP(S) with credentials `username`/`password`."""

    def __init__(
        self,
        mockup: str,
        workdir: Path,
        *,
        username: str = "admin",
        password: str = "s3cret-pw",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.root = workdir / mockup
        shutil.copytree(FIXTURES / mockup, self.root)
        self.username = username
        self.password = password
        self.tls = tls
        self.tokens: dict[str, str] = {}  # token -> session id
        self.deleted: list[str] = []  # session ids deleted by clients
        self.logins = 0
        self.requests: list[tuple[str, str]] = []
        self._slow: dict[str, float] = {}
        self._garbage: dict[str, bytes] = {}
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # -- hooks -------------------------------------------------------------------------------

    def file(self, path: str) -> Path:
        rel = path.removeprefix("/redfish/v1").strip("/")
        return self.root / rel / "index.json" if rel else self.root / "index.json"

    def set_reading(self, path: str, key: str, value: Any) -> None:
        """Set `resource[key].Reading` (an excerpt) of the resource at `path` in the copy."""
        file = self.file(path)
        doc = json.loads(file.read_text())
        doc[key]["Reading"] = value
        file.write_text(json.dumps(doc, indent=4))

    def drop_sessions(self) -> None:
        self.tokens.clear()

    def slow(self, path: str, seconds: float) -> None:
        self._slow[path.rstrip("/")] = seconds

    def garbage(self, path: str, body: bytes) -> None:
        self._garbage[path.rstrip("/")] = body

    # -- HTTP --------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        if request.headers.get("X-Auth-Token") in self.tokens:
            return True
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return secrets.compare_digest(f"{user}:{pw}", f"{self.username}:{self.password}")
        return False

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response(
            {"error": {"code": "Base.1.0.NoValidSession", "message": "auth required"}},
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="redfish"'},
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        self.requests.append((request.method, path))
        if request.method == "POST" and path == SESSIONS:
            return await self._login(request)
        is_root = path in ("/redfish", "/redfish/v1")
        if not is_root and not self._authorized(request):
            return self._unauthorized()
        if request.method == "DELETE" and path.startswith(SESSIONS + "/"):
            session_id = path.rsplit("/", 1)[1]
            for token, sid in list(self.tokens.items()):
                if sid == session_id:
                    del self.tokens[token]
            self.deleted.append(session_id)
            return web.Response(status=204)
        if request.method != "GET":
            return web.json_response({"error": "method not allowed"}, status=405)
        if path in self._slow:
            await asyncio.sleep(self._slow[path])
        if path in self._garbage:
            return web.Response(body=self._garbage[path], content_type="application/json")
        file = self.file(path)
        if not file.is_file():
            return web.json_response({"error": f"{path} not found"}, status=404)
        return web.Response(body=file.read_bytes(), content_type="application/json")

    async def _login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "body is not JSON"}, status=400)
        ok = (
            isinstance(body, dict)
            and body.get("UserName") == self.username
            and body.get("Password") == self.password
        )
        if not ok:
            return self._unauthorized()
        self.logins += 1
        token, session_id = secrets.token_hex(16), f"S{self.logins}"
        self.tokens[token] = session_id
        return web.json_response(
            {"@odata.id": f"{SESSIONS}/{session_id}", "Id": session_id, "UserName": self.username},
            status=201,
            headers={"X-Auth-Token": token, "Location": f"{SESSIONS}/{session_id}"},
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        ssl_context = None
        if self.tls is not None:
            import ssl

            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(*self.tls)
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port: int = self._runner.addresses[0][1]
        return port

    def start(self) -> RedfishServer:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@contextmanager
def redfish_server(mockup: str, workdir: Path, **kwargs: Any) -> Iterator[RedfishServer]:
    server = RedfishServer(mockup, workdir, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()
