"""The flat XML dialect of API v2: ``<xml><name>value</name>...</xml>``.

Parsing refuses everything a payment message never needs and an attacker loves: DOCTYPEs,
entity declarations and external references (``defusedxml``), nested elements, attributes
that carry data, duplicate fields, non-UTF-8 text and oversized bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from xml.etree.ElementTree import Element, ParseError

import defusedxml
from defusedxml.ElementTree import fromstring

from scanpay.errors import MalformedMessageError

MAX_BODY_BYTES: Final = 64 * 1024
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def parse_xml(body: bytes, *, root: str = "xml", max_bytes: int = MAX_BODY_BYTES) -> dict[str, str]:
    """Decode one flat v2 message into ``{name: text}``; raise :class:`MalformedMessageError`."""
    if not body or not body.strip():
        raise MalformedMessageError("empty body")
    if len(body) > max_bytes:
        raise MalformedMessageError(f"body larger than {max_bytes} bytes")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessageError("body is not UTF-8") from None
    try:
        element: Element = fromstring(body, forbid_dtd=True)
    except defusedxml.DTDForbidden:
        raise MalformedMessageError("XML with a DOCTYPE is refused") from None
    except defusedxml.EntitiesForbidden:
        raise MalformedMessageError("XML entity declarations are refused") from None
    except defusedxml.ExternalReferenceForbidden:
        raise MalformedMessageError("XML external references are refused") from None
    except defusedxml.DefusedXmlException:
        raise MalformedMessageError("XML construct refused") from None
    except (ParseError, ValueError):
        raise MalformedMessageError("body is not well-formed XML") from None
    if element.tag != root:
        raise MalformedMessageError(f"root element must be <{root}>")
    fields: dict[str, str] = {}
    for child in element:
        name = child.tag
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
            raise MalformedMessageError("unexpected element name")
        if len(child):
            raise MalformedMessageError(f"element <{name}> must not contain elements")
        if name in fields:
            raise MalformedMessageError(f"duplicate element <{name}>")
        fields[name] = child.text or ""
    return fields


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside one CDATA section: split it across two.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def dump_xml(fields: Mapping[str, str | int], *, root: str = "xml") -> bytes:
    """Encode a flat message; strings go in CDATA, integers as bare digits."""
    parts = [f"<{root}>"]
    for name, value in fields.items():
        if not name or not set(name) <= _NAME_CHARS:
            raise MalformedMessageError("unexpected element name")
        text = str(value) if isinstance(value, int) else _cdata(value)
        parts.append(f"<{name}>{text}</{name}>")
    parts.append(f"</{root}>")
    return "".join(parts).encode("utf-8")
