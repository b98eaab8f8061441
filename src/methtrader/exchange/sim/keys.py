"""API keys of the simulator: a JSON file in the state dir, re-read whenever it changes on disk."""

import hashlib
import json
import os
import secrets
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KEYS_FILE = "keys.json"
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class ApiKey:
    api_key: str
    api_secret: str
    uid: str  # the account's Bybit UID: digits only
    created_ms: int = 0

    @property
    def key_id(self) -> str:
        """The key's own id, as Bybit's `id` in query-api (a numeric string): derived from the
        api key, so it stays the same across restarts without being stored."""
        digest = hashlib.sha256(self.api_key.encode()).digest()
        return str(int.from_bytes(digest[:8], "big") % 10**8)


def _token(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def _read(path: Path) -> list[ApiKey]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read API keys from {path}: {exc}") from exc
    rows = raw.get("keys", []) if isinstance(raw, dict) else []
    keys = [
        ApiKey(str(r["api_key"]), str(r["api_secret"]), str(r["uid"]), int(r.get("created_ms", 0)))
        for r in rows
        if isinstance(r, dict) and {"api_key", "api_secret", "uid"} <= r.keys()
    ]
    for key in keys:
        if not key.uid.isdigit():
            raise ValueError(f"cannot read API keys from {path}: uid {key.uid!r} is not a number")
    return keys


def add_key(state_dir: str | os.PathLike[str], uid: str | None = None) -> tuple[str, str, str]:
    """Create a key (for a new account unless `uid` is given); return (api_key, api_secret, uid)."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / KEYS_FILE
    keys = _read(path)
    if uid is not None and not uid.isdigit():
        raise ValueError(f"a Bybit UID is a number, got {uid!r}")
    if uid is None:
        taken = {k.uid for k in keys}
        uid = str(100_000_000 + secrets.randbelow(900_000_000))
        while uid in taken:
            uid = str(100_000_000 + secrets.randbelow(900_000_000))
    key = ApiKey(_token(18), _token(36), uid, int(time.time() * 1000))
    keys.append(key)
    payload = {
        "keys": [
            {"api_key": k.api_key, "api_secret": k.api_secret, "uid": k.uid, "created_ms": k.created_ms}
            for k in keys
        ]
    }
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return key.api_key, key.api_secret, key.uid


class KeyStore:
    """Looks keys up by api_key; the file is re-read when its mtime/size/inode changes."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.path = Path(state_dir) / KEYS_FILE
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys: dict[str, ApiKey] = {}

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        keys = _read(self.path) if stamp is not None else []
        self._keys = {k.api_key: k for k in keys}
        self._stamp = stamp

    def get(self, api_key: str) -> ApiKey | None:
        with self._lock:
            self._refresh()
            return self._keys.get(api_key)

    def all(self) -> list[ApiKey]:
        with self._lock:
            self._refresh()
            return list(self._keys.values())
