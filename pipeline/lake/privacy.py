"""`client_ip` never lands raw: it becomes a keyed hash (HMAC-SHA256) or is dropped.

With a secret (`MICRODC_LAKE_IP_SECRET` or `--ip-secret`), the lake holds `client_ip_hmac`: the
first 16 bytes of HMAC-SHA256(secret, ip) as hex - the same client maps to the same value, so
analysts can count distinct clients, but nobody without the secret can recover or confirm an IP
(a plain hash of the 2^32 IPv4 addresses is reversed in seconds). Without a secret the column
is null: dropping is the safe default.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

IP_SECRET_ENV = "MICRODC_LAKE_IP_SECRET"
#: Distinct IPs remembered per writer (clients repeat); cleared when full.
_CACHE_MAX = 100_000


@dataclass
class IpPolicy:
    """`secret=None` drops IPs; otherwise they are replaced by their keyed hash."""

    secret: bytes | None = None
    _cache: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def mode(self) -> str:
        return "hmac-sha256" if self.secret else "drop"

    def __call__(self, ip: str | None) -> str | None:
        if ip is None or self.secret is None:
            return None
        hashed = self._cache.get(ip)
        if hashed is None:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            digest = hmac.digest(self.secret, ip.encode(), "sha256")
            hashed = self._cache[ip] = digest[:16].hex()
        return hashed
