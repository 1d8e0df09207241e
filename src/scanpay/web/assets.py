"""Static files with their content's digest in the URL, cached for a year, and compression.

:class:`Assets` reads ``static/`` once at start-up (a few small files) and keeps each file with
its gzip form. ``assets.url("checkout.js")`` is ``/static/checkout.<10 hex>.js``: the digest
changes whenever the file does, so that URL is served with
``Cache-Control: public, max-age=31536000, immutable``. The plain name still works (no-cache,
with an ``ETag``), and a fingerprint that is not the current one is a 404, so a stale page
never gets new code under an old name. Compressed answers (``Content-Encoding: gzip``) go to
clients that say ``Accept-Encoding: gzip``; :func:`html_response` does the same for pages.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

LONG_CACHE: Final = "public, max-age=31536000, immutable"
MIN_COMPRESS: Final = 512
TYPES: Final = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
    ".png": "image/png",
}


def accepts_gzip(headers: object) -> bool:
    value = getattr(headers, "get", lambda _k, _d=None: None)("accept-encoding", "") or ""
    return any(part.split(";")[0].strip().lower() == "gzip" for part in str(value).split(","))


def _gzip(data: bytes) -> bytes | None:
    if len(data) < MIN_COMPRESS:
        return None
    packed = gzip.compress(data, compresslevel=9, mtime=0)
    return packed if len(packed) < len(data) else None


@dataclass(frozen=True)
class Asset:
    name: str
    data: bytes
    packed: bytes | None
    digest: str
    media_type: str

    @property
    def versioned(self) -> str:
        stem, dot, suffix = self.name.rpartition(".")
        return f"{stem}.{self.digest}.{suffix}" if dot else f"{self.name}.{self.digest}"


class Assets:
    """The files of one folder (not recursive), by plain and by fingerprinted name."""

    def __init__(self, directory: Path) -> None:
        self._by_name: dict[str, Asset] = {}
        self._by_versioned: dict[str, Asset] = {}
        for path in sorted(directory.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            data = path.read_bytes()
            media = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
            asset = Asset(
                name=path.name,
                data=data,
                packed=_gzip(data) if media and not media.startswith("image/png") else None,
                digest=hashlib.sha256(data).hexdigest()[:10],
                media_type=media or "application/octet-stream",
            )
            self._by_name[asset.name] = asset
            self._by_versioned[asset.versioned] = asset

    def url(self, name: str) -> str:
        """The long-cacheable URL of ``name`` (KeyError for a file that is not there)."""
        return "/static/" + self._by_name[name].versioned

    def find(self, name: str) -> tuple[Asset, bool] | None:
        """``(asset, fingerprinted)`` for a requested file name, or None."""
        if name in self._by_versioned:
            return self._by_versioned[name], True
        if name in self._by_name:
            return self._by_name[name], False
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app mounted at ``/static``."""
        request = Request(scope, receive)
        if request.method not in ("GET", "HEAD"):
            response: Response = PlainTextResponse("method not allowed", 405)
            response.headers["Allow"] = "GET, HEAD"
            await response(scope, receive, send)
            return
        found = self.find(request.url.path.rsplit("/", 1)[-1])
        if found is None:
            await PlainTextResponse("not found", 404)(scope, receive, send)
            return
        asset, fingerprinted = found
        etag = f'"{asset.digest}"'
        headers = {
            "Cache-Control": LONG_CACHE if fingerprinted else "no-cache",
            "ETag": etag,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == etag:
            await Response(status_code=304, headers=headers)(scope, receive, send)
            return
        body = asset.data
        if asset.packed is not None and accepts_gzip(request.headers):
            body = asset.packed
            headers["Content-Encoding"] = "gzip"
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            body = b""
        await Response(body, media_type=asset.media_type, headers=headers)(scope, receive, send)


def html_response(
    request: Request, html: str, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """An HTML page, gzip-compressed when the client accepts it."""
    body = html.encode("utf-8")
    all_headers = {"Vary": "Accept-Encoding", **(headers or {})}
    packed = _gzip(body) if accepts_gzip(request.headers) else None
    if packed is not None:
        body = packed
        all_headers["Content-Encoding"] = "gzip"
    return Response(body, status_code, headers=all_headers, media_type="text/html; charset=utf-8")
