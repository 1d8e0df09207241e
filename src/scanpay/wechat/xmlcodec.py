"""The flat XML dialect of API v2: ``<xml><name>value</name>...</xml>``.

:func:`parse_xml` drives the standard library's expat parser directly and builds the flat
dictionary as each field closes; no element tree is ever built. Anything a payment message never
needs and an attacker loves is a :class:`~scanpay.errors.MalformedMessageError`:

* a DOCTYPE of any kind, so no entity, notation or external-subset declaration can ever take
  effect (billion laughs, quadratic blowup, XXE, DTD retrieval); handlers for entity, notation
  and external-reference events refuse as well, parameter entities are never parsed, and a
  reference to an undeclared entity is a well-formedness error;
* an XML declaration naming an encoding other than UTF-8, and bodies that are not UTF-8;
* bodies larger than ``max_bytes``, empty or blank bodies, anything that is not well-formed
  (unclosed or mismatched tags, a second root, trailing text);
* a root element other than ``root``, namespaced element names (``xmlns`` defaults included),
  field names outside ``[A-Za-z0-9_]``, nested elements, repeated fields, and non-whitespace
  text directly inside the root, between the fields.

Attributes are read past and ignored; comments and processing instructions are ignored, and text
on either side of them joins (``<a>1<!--x-->2</a>`` reads ``"12"``). A field's text is its
character data with CDATA sections, character references and the five predefined entities
resolved; an empty element reads ``""``.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from typing import Final, NoReturn
from xml.parsers import expat

from scanpay.errors import MalformedMessageError

MAX_BODY_BYTES: Final = 64 * 1024
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_FIELD_NAME: Final = re.compile(r"[A-Za-z0-9_]+")
_XML_SPACE: Final = " \t\n\r"


def _refuse_doctype(*_: object) -> NoReturn:
    raise MalformedMessageError("XML with a DOCTYPE is refused")


def _refuse_entities(*_: object) -> NoReturn:
    raise MalformedMessageError("XML entity declarations are refused")


def _refuse_external(*_: object) -> NoReturn:
    raise MalformedMessageError("XML external references are refused")


def _check_declaration(_version: str, encoding: str | None, _standalone: int) -> None:
    # The parser reads every body as UTF-8 whatever it declares; a body that claims another
    # encoding would be read differently by someone else, so it is refused, not reinterpreted.
    if encoding is None:
        return
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        name = ""
    if name != "utf-8":
        raise MalformedMessageError("XML declares an encoding other than UTF-8")


# The fast path: the shape WeChat and dump_xml produce, ``<root>`` then fields that hold either one
# CDATA section or plain text, whitespace between them. Its characters are those XML 1.0 allows,
# less CR (a parser rewrites it), "]" (it could end a CDATA section) and, in plain text, "<" and "&"
# (markup and references). Such a body has no declarations, references, comments or attributes, so
# it means the same to every XML parser; any other body goes to expat, which also names the error.
# Every quantifier is possessive and each is followed by a character it cannot match, so matching
# never backtracks: time is linear in the body, whatever the body.
_SPACE: Final = r"[ \t\n\r]*+"
_NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*+"
_CDATA_TEXT: Final = r"[^\x00-\x08\x0b-\x1f\ufffe\uffff\]]*+"
_PLAIN_TEXT: Final = r"[^\x00-\x08\x0b-\x1f\ufffe\uffff\]<&]*+"
_CANONICAL_FIELD: Final = re.compile(
    rf"{_SPACE}<({_NAME})>(?:<!\[CDATA\[({_CDATA_TEXT})\]\]>|({_PLAIN_TEXT}))</\1>"
)
_CANONICAL_DOCUMENT: Final = re.compile(
    rf"{_SPACE}<(?P<root>{_NAME})>"
    rf"(?:{_SPACE}<(?P<f>{_NAME})>(?:<!\[CDATA\[{_CDATA_TEXT}\]\]>|{_PLAIN_TEXT})</(?P=f)>)*+"
    rf"(?P<tail>{_SPACE}</(?P=root)>{_SPACE})"
)


def _parse_canonical(text: str, root: str) -> dict[str, str] | None:
    """The fields of a body in the fast-path shape, or ``None`` to hand it to expat."""
    document = _CANONICAL_DOCUMENT.fullmatch(text)
    if document is None or document["root"] != root:
        return None
    # The fields lie back to back between the root's tags, so every search succeeds where the
    # previous one ended (a search over the tail would restart at each of its positions).
    found = _CANONICAL_FIELD.findall(text, document.end("root") + 1, document.start("tail"))
    fields = {name: cdata + plain for name, cdata, plain in found}
    return fields if len(fields) == len(found) else None


def _parse_with_expat(body: bytes, root: str) -> dict[str, str]:
    """Any body: expat with every declaration refused, fields collected as they close."""
    fields: dict[str, str] = {}
    pieces: list[str] = []  # character data since the last element event, in expat's chunks
    depth = 0
    field = ""

    def start(name: str, _attributes: list[str]) -> None:
        nonlocal depth, field
        if depth == 1:
            _refuse_text_between_fields(pieces, root)
            if _FIELD_NAME.fullmatch(name) is None:
                raise MalformedMessageError("unexpected element name")
            field = name
            depth = 2
        elif depth == 0:
            if name != root:
                raise MalformedMessageError(f"root element must be <{root}>")
            depth = 1
        else:
            raise MalformedMessageError(f"element <{field}> must not contain elements")

    def end(_name: str) -> None:
        # Expat has already matched the end tag to its start tag.
        nonlocal depth
        depth -= 1
        if depth == 1:
            if field in fields:
                raise MalformedMessageError(f"duplicate element <{field}>")
            fields[field] = "".join(pieces)
            pieces.clear()
        else:
            _refuse_text_between_fields(pieces, root)

    # "}" turns namespace processing on: a namespaced name arrives as "uri}local" and fails the
    # name checks, and an unbound prefix is a well-formedness error.
    parser = expat.ParserCreate("utf-8", "}")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.ElementDeclHandler = _refuse_doctype
    parser.AttlistDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entities
    parser.UnparsedEntityDeclHandler = _refuse_entities
    parser.NotationDeclHandler = _refuse_entities
    parser.SkippedEntityHandler = _refuse_entities
    parser.ExternalEntityRefHandler = _refuse_external
    parser.XmlDeclHandler = _check_declaration
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = pieces.append
    parser.buffer_text = True
    parser.ordered_attributes = True
    try:
        parser.Parse(body, True)
    except expat.ExpatError:
        raise MalformedMessageError("body is not well-formed XML") from None
    return fields


def _refuse_text_between_fields(pieces: list[str], root: str) -> None:
    if pieces:
        if "".join(pieces).strip(_XML_SPACE):
            raise MalformedMessageError(f"text outside the fields of <{root}>")
        pieces.clear()


def parse_xml(body: bytes, *, root: str = "xml", max_bytes: int = MAX_BODY_BYTES) -> dict[str, str]:
    """Decode one flat v2 message into ``{name: text}``; raise :class:`MalformedMessageError`."""
    if not body or not body.strip():
        raise MalformedMessageError("empty body")
    if len(body) > max_bytes:
        raise MalformedMessageError(f"body larger than {max_bytes} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedMessageError("body is not UTF-8") from None
    fields = _parse_canonical(text, root)
    return _parse_with_expat(body, root) if fields is None else fields


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
