"""Rotation of the WeChat Pay public key (public-key mode): a new ``PUB_KEY_ID_...``.

WeChat announces a new public key before signing with it, so merchants can trust both during
the change. :class:`PublicKeyRing` models that in three steps, each on the control API:
``rotate`` makes a new key pair and lists it (its public half is written to
``DIR/wechatpay_public_keys/<id>.pem``, the "download" from the merchant platform) while the
old key keeps signing, unless asked to ``activate`` at once; ``activate`` makes the newest key
sign answers and notifications; ``retire`` drops every key but the one that signs. The ring
(private halves included, mode 0600) is kept in ``DIR/simulator/public_key_ring.json``, so a
restarted simulator signs with the key it signed with before; ``merchant.json`` keeps naming
the first key.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scanpay.errors import ConfigurationError, ValidationError
from scanpay.simulator import ids
from scanpay.simulator.credentials import (
    PRIVATE_DIR,
    MerchantCredentials,
    SimulatorKeys,
    write_file,
)
from scanpay.wechat.keys import load_private_key

RING_FILE: Final = "public_key_ring.json"
PUBLIC_DIR: Final = "wechatpay_public_keys"


@dataclass(frozen=True)
class PublicKeyPair:
    key_id: str
    private_key: rsa.RSAPrivateKey

    def __repr__(self) -> str:
        return f"PublicKeyPair(key_id={self.key_id!r})"

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def private_pem(self) -> str:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")


class PublicKeyRing:
    """WeChat Pay public keys, oldest first; one of them signs; thread-safe; kept on disk."""

    def __init__(self, creds: MerchantCredentials, keys: SimulatorKeys) -> None:
        self._dir = creds.state_dir
        self._file = self._dir / PRIVATE_DIR / RING_FILE if self._dir is not None else None
        self._lock = threading.Lock()
        if self._file is not None and self._file.exists():
            self._keys, self._active = self._load(self._file)
            return
        first = load_private_key(keys.wechatpay_private_key_pem.reveal())
        self._keys = [PublicKeyPair(creds.wechatpay_public_key_id, first)]
        self._active = 0

    @staticmethod
    def _load(path: Path) -> tuple[list[PublicKeyPair], int]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            pairs = [
                PublicKeyPair(str(e["key_id"]), load_private_key(str(e["private_key"])))
                for e in data["keys"]
            ]
            active = int(data["active"])
        except (OSError, ValueError, KeyError, TypeError, ConfigurationError) as exc:
            raise ConfigurationError(
                f"WeChat Pay public key ring {path} is unreadable ({type(exc).__name__})"
            ) from None
        if not 0 <= active < len(pairs):
            raise ConfigurationError(f"WeChat Pay public key ring {path} is inconsistent")
        return pairs, active

    def _save(self) -> None:
        """Write the ring and the public halves (call with the lock held)."""
        if self._file is None or self._dir is None:
            return
        document = {
            "active": self._active,
            "keys": [{"key_id": p.key_id, "private_key": p.private_pem()} for p in self._keys],
        }
        write_file(self._file, json.dumps(document, indent=1) + "\n", private=True)
        for pair in self._keys:
            write_file(
                self._dir / PUBLIC_DIR / f"{pair.key_id}.pem", pair.public_pem, private=False
            )

    def __repr__(self) -> str:
        return f"PublicKeyRing(ids={self.ids()!r}, signing={self.active().key_id!r})"

    def active(self) -> PublicKeyPair:
        """The key that signs answers and notifications in public-key mode now."""
        with self._lock:
            return self._keys[self._active]

    def ids(self) -> list[str]:
        with self._lock:
            return [p.key_id for p in self._keys]

    def listing(self) -> dict[str, Any]:
        """What ``GET /sim/public-keys`` shows: every key's id and public PEM."""
        with self._lock:
            return {
                "signing": self._keys[self._active].key_id,
                "keys": [{"key_id": p.key_id, "public_key": p.public_pem} for p in self._keys],
            }

    def public_pem(self, key_id: str) -> str:
        with self._lock:
            for pair in self._keys:
                if pair.key_id == key_id:
                    return pair.public_pem
        raise ValidationError(f"no WeChat Pay public key {key_id!r}")

    def rotate(self, *, activate: bool = False) -> str:
        """A new key pair, listed; it signs from now on only when ``activate``."""
        fresh = PublicKeyPair(
            ids.public_key_id(), rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        with self._lock:
            self._keys.append(fresh)
            if activate:
                self._active = len(self._keys) - 1
            self._save()
        return fresh.key_id

    def activate(self) -> str:
        """The newest key signs from now on; returns its id."""
        with self._lock:
            self._active = len(self._keys) - 1
            self._save()
            return self._keys[-1].key_id

    def retire(self) -> list[str]:
        """Drop every key but the one that signs; the ids dropped."""
        with self._lock:
            keep = self._keys[self._active]
            dropped = [p.key_id for p in self._keys if p is not keep]
            self._keys, self._active = [keep], 0
            self._save()
            return dropped


def public_key_routes(ring: PublicKeyRing) -> list[Route]:
    """``GET /sim/public-keys``; ``POST /sim/public-keys/rotate`` (``{"activate": false}``),
    ``/activate``, ``/retire``."""

    async def listing(request: Request) -> Response:
        return JSONResponse(ring.listing())

    async def rotate(request: Request) -> Response:
        raw = await request.body()
        try:
            data = json.loads(raw[:4096] or b"{}")
        except ValueError:
            data = None
        activate = data.get("activate", False) if isinstance(data, dict) else None
        if not isinstance(activate, bool):
            return JSONResponse(
                {"ok": False, "error": "INVALID_REQUEST", "message": 'body: {"activate": bool}'},
                status_code=400,
            )
        key_id = ring.rotate(activate=activate)
        return JSONResponse({**ring.listing(), "key_id": key_id})

    async def activate(request: Request) -> Response:
        key_id = ring.activate()
        return JSONResponse({**ring.listing(), "key_id": key_id})

    async def retire(request: Request) -> Response:
        dropped = ring.retire()
        return JSONResponse({**ring.listing(), "retired": dropped})

    return [
        Route("/sim/public-keys", listing, methods=["GET"]),
        Route("/sim/public-keys/rotate", rotate, methods=["POST"]),
        Route("/sim/public-keys/activate", activate, methods=["POST"]),
        Route("/sim/public-keys/retire", retire, methods=["POST"]),
    ]
