"""The webhook sender against small asyncio HTTP/1.1 servers on loopback: keep-alive reuse,
a connection the receiver closed while idle, an answer cut at the read cap, the time limit,
``Retry-After``, and TLS checked against the URL's name (SNI sent, certificate verified)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from scanpay.webhooks.sender import KEPT, Sender

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
HEADERS = {"webhook-id": "evt_test"}


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def read_request(self, reader: asyncio.StreamReader) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        self.requests.append(head + await reader.readexactly(length))
        return True


@asynccontextmanager
async def serving(
    answer: Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    server = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            await answer(server, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    server.port = listening.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listening.close()


async def keep_alive(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while await server.read_request(reader):
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await w.drain()


async def test_keep_alive_reuses_one_connection_and_survives_an_idle_close() -> None:
    sender = Sender(allow_private=True)
    try:
        async with serving(keep_alive) as server:
            url = f"http://127.0.0.1:{server.port}/hook?x=1"
            for _ in range(5):
                answer = await sender.post(url, HEADERS, b'{"a":1}')
                assert (answer.status, answer.excerpt, answer.error) == (200, "ok", None)
            assert (server.connections, sender.opened, len(server.requests)) == (1, 1, 5)
            first = server.requests[0]
            assert first.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
            assert f"host: 127.0.0.1:{server.port}\r\n".encode() in first.lower()
            assert b"webhook-id: evt_test\r\n" in first
            assert first.endswith(b'\r\n\r\n{"a":1}')

        async def answer_once(s: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if await s.read_request(r):  # then close: the sender's idle connection is stale
                w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await w.drain()

        async with serving(answer_once) as server:
            url = f"http://127.0.0.1:{server.port}/"
            for _ in range(3):
                assert (await sender.post(url, HEADERS, b"{}")).status == 200
                await asyncio.sleep(0.05)
            assert server.connections == len(server.requests) == 3
    finally:
        await sender.aclose()


async def test_connection_close_cap_timeout_and_retry_after() -> None:
    sender = Sender(allow_private=True, timeout=0.5)

    async def big(s: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await s.read_request(r):  # a chunked answer far larger than the cap
            w.write(b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(100):
                w.write(b"2000\r\n" + b"x" * 0x2000 + b"\r\n")
            w.write(b"0\r\n\r\n")
            await w.drain()

    async def closing(s: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await s.read_request(r):
            w.write(b"HTTP/1.1 302 Found\r\nLocation: http://10.0.0.1/\r\n"
                    b"Connection: close\r\nContent-Length: 0\r\n\r\n")  # fmt: skip
            await w.drain()

    async def silent(s: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await s.read_request(r)
        await asyncio.sleep(5)

    try:
        async with serving(big) as server:
            url = f"http://127.0.0.1:{server.port}/"
            for _ in range(2):
                answer = await sender.post(url, HEADERS, b"{}")
                assert (answer.status, answer.retry_after) == (503, "7")
                assert answer.excerpt == "x" * KEPT
            assert server.connections == 2  # a connection left mid-answer is not reused
        async with serving(closing) as server:
            url = f"http://127.0.0.1:{server.port}/"
            for _ in range(2):  # the redirect is an answer, not followed
                assert (await sender.post(url, HEADERS, b"{}")).status == 302
            assert server.connections == len(server.requests) == 2
        async with serving(silent) as server:
            began = time.monotonic()
            answer = await sender.post(f"http://127.0.0.1:{server.port}/", HEADERS, b"{}")
            assert (answer.status, answer.error) == (None, "timed out")
            assert 0.4 < time.monotonic() - began < 2
        answer = await sender.post(f"http://127.0.0.1:{server.port}/", HEADERS, b"{}")
        assert answer.status is None
        assert answer.error == "no answer: ConnectionRefusedError"
    finally:
        await sender.aclose()


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``localhost`` only (no IP address in it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_checks_the_urls_name(tmp_path: Path) -> None:
    cert_file, key_file = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    trusting_sender = Sender(allow_private=True, ssl_context=trusting)
    default_sender = Sender(allow_private=True)  # the system's trust store
    seen: list[str | None] = []

    def sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        seen.append(name)

    server_tls.sni_callback = sni
    try:
        async with serving(keep_alive, server_tls) as server:
            # connected to 127.0.0.1 (resolved and checked), but SNI and certificate check
            # use the URL's name, so the certificate for "localhost" is accepted
            url = f"https://localhost:{server.port}/hook"
            for _ in range(2):
                answer = await trusting_sender.post(url, HEADERS, b"{}")
                assert (answer.status, answer.excerpt) == (200, "ok")
            assert seen == ["localhost"]  # one handshake: the connection was reused
            assert f"host: localhost:{server.port}\r\n".encode() in server.requests[0].lower()
            # the same server by address: the certificate does not name 127.0.0.1
            answer = await trusting_sender.post(
                f"https://127.0.0.1:{server.port}/hook", HEADERS, b"{}"
            )
            assert answer.status is None
            assert answer.error == "no answer: SSLCertVerificationError"
            # a certificate the system does not trust
            answer = await default_sender.post(url, HEADERS, b"{}")
            assert answer.error == "no answer: SSLCertVerificationError"
            assert len(server.requests) == 2
    finally:
        await trusting_sender.aclose()
        await default_sender.aclose()


async def test_answers_that_are_not_plain_http() -> None:
    """Malformed and unusual answers: each becomes an Answer (never an exception), and a
    connection is reused only after an answer that allows it."""
    sender = Sender(allow_private=True, timeout=2.0)

    def scripted(answer: bytes, close: bool = False) -> Handler:
        async def handle(s: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            while await s.read_request(r):
                w.write(answer)
                await w.drain()
                if close:
                    return

        return handle  # type: ignore[return-value]

    cases: list[tuple[bytes, bool, int | None, str, str | None, int]] = [
        # answer bytes, server closes after it, status, excerpt, error, connections for 2
        (b"SMTP ready\r\n\r\n", False, None, "", "no answer: not an HTTP/1.1 answer", 2),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 20000, False, None, "",
         "no answer: not an HTTP/1.1 answer", 2),  # a head past the 16 KiB cap
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", False, 204, "",
         None, 1),  # an informational answer first: the real one counts
        (b"HTTP/1.1 200 OK\r\n\r\nno length, ended by the close", True, 200,
         "no length, ended by the close", None, 2),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False, 200, "ok", None, 2),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n"
         b"Content-Length: 2\r\n\r\nno", False, 200, "ok", None, 2),  # two answers to one
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True, 200, "short", None, 2),
        (b"HTTP/1.1 2000 Odd\r\nContent-Length: 0\r\n\r\n", False, None, "",
         "no answer: not an HTTP/1.1 answer", 2),
        (b"", True, None, "", "no answer: EOFError", 2),  # closed without a byte
    ]  # fmt: skip
    try:
        for raw, close, status, excerpt, error, connections in cases:
            async with serving(scripted(raw, close)) as server:  # type: ignore[arg-type]
                url = f"http://127.0.0.1:{server.port}/"
                for _ in range(2):
                    answer = await sender.post(url, HEADERS, b"{}")
                    assert (answer.status, answer.excerpt, answer.error) == (
                        status,
                        excerpt,
                        error,
                    ), raw[:40]
                assert server.connections == connections, raw[:40]
    finally:
        await sender.aclose()


async def test_header_values_that_http_cannot_carry_are_refused() -> None:
    sender = Sender(allow_private=True)
    try:
        for headers in ({"webhook-id": "evt\r\nx-injected: 1"}, {"bad name": "v"}):
            with pytest.raises(ValueError):
                await sender.post("http://127.0.0.1:9/", headers, b"{}")
    finally:
        await sender.aclose()


async def test_a_checked_address_is_kept_for_a_while() -> None:
    """A host name is looked up and checked again once the last check is
    ``resolved_seconds`` old, not before every delivery, and once for the deliveries that
    need it at the same moment; a refusal is not kept."""
    sender = Sender(allow_private=True, resolved_seconds=0.3)
    strict = Sender(allow_private=False)
    try:
        async with serving(keep_alive) as server:
            url = f"http://localhost:{server.port}/hook"
            for _ in range(3):
                assert (await sender.post(url, HEADERS, b"{}")).status == 200
            assert sender.lookups == 1
            await asyncio.sleep(0.35)
            assert (await sender.post(url, HEADERS, b"{}")).status == 200
            assert sender.lookups == 2
            for _ in range(2):  # refused each time, looked up each time
                answer = await strict.post(url, HEADERS, b"{}")
                assert answer.status is None
                assert answer.error is not None
                assert "loopback" in answer.error
            assert strict.lookups == 0
            assert len(server.requests) == 4
            await asyncio.sleep(0.35)  # run out again: 20 at once share one look-up
            answers = await asyncio.gather(*(sender.post(url, HEADERS, b"{}") for _ in range(20)))
            assert [a.status for a in answers] == [200] * 20
            assert sender.lookups == 3
    finally:
        await sender.aclose()
        await strict.aclose()
