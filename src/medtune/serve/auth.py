"""API keys: bearer keys from `--api-key` or a keys file of `id key` lines, and the admin key.

Each key has an id, and only the id reaches the audit log and the rate limiter, never the key. With no
key configured the API is open, which is allowed only on a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from medtune.errors import MedtuneError

ANONYMOUS = "anonymous"


@dataclass
class Keys:
    """key -> id for API users, plus the admin key (None: no admin calls)."""

    users: dict[str, str] = field(default_factory=dict)
    admin: str | None = None

    @property
    def open(self) -> bool:
        """True when no API key is configured: every caller is let in as `anonymous`."""
        return not self.users

    def user_id(self, authorization: str | None) -> str | None:
        """The id of the key in an `Authorization: Bearer KEY` header; None when it is missing or wrong."""
        if self.open:
            return ANONYMOUS
        token = bearer(authorization)
        if token is None:
            return None
        found = None
        for key, ident in self.users.items():  # compare with every key: no early exit to time
            if hmac.compare_digest(key.encode(), token.encode()):
                found = ident
        return found

    def is_admin(self, authorization: str | None) -> bool:
        token = bearer(authorization)
        return bool(self.admin and token is not None and hmac.compare_digest(self.admin.encode(), token.encode()))


def bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def key_id(key: str) -> str:
    """The id of a key given on the command line: a short hash, stable across restarts."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def read_keys_file(path: str | Path) -> dict[str, str]:
    """`id key` per line; blank lines and `#` comments skipped. Errors name the file and line."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MedtuneError(f"--keys-file {p}: cannot read it ({e})") from None
    keys: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise MedtuneError(f"{p}:{n}: expected `ID KEY` (two words), got {len(parts)} words")
        ident, key = parts
        if key in keys:
            raise MedtuneError(f"{p}:{n}: key of '{ident}' is already the key of '{keys[key]}'")
        keys[key] = ident
    if not keys:
        raise MedtuneError(f"--keys-file {p}: no `ID KEY` lines")
    return keys


def load_keys(api_keys: list[str] | None = None, keys_file: str | None = None, admin_key: str | None = None) -> Keys:
    users = {k: key_id(k) for k in (api_keys or []) if k}
    if keys_file:
        users.update(read_keys_file(keys_file))
    if admin_key is not None and len(admin_key) < 8:
        raise MedtuneError("--admin-key: use at least 8 characters")
    return Keys(users, admin_key)


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, keys: Keys) -> None:
    """An open API (no key) may listen on loopback only."""
    if keys.open and not is_loopback(host):
        raise MedtuneError(f"--host {host}: refusing to serve without an API key on a non-loopback address; "
                           "pass --api-key KEY or --keys-file FILE")
