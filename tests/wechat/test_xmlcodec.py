"""The flat v2 XML codec: round trips and hostile input, each with its typed error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanpay.errors import MalformedMessageError
from scanpay.wechat.xmlcodec import MAX_BODY_BYTES, dump_xml, parse_xml

# XML 1.0 allows tab, LF and everything from U+0020 except surrogates and U+FFFE/U+FFFF.
# CR is left out: XML parsers normalise it to LF, as WeChat's would.
_xml_char = st.characters(
    codec="utf-8", exclude_characters="\r\ufffe\uffff", min_codepoint=0x20
) | st.sampled_from("\t\n")
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(_names, st.text(_xml_char, max_size=40) | st.integers(0, 2**31), max_size=12)
)
def test_dump_then_parse_round_trip(fields: dict[str, str | int]) -> None:
    assert parse_xml(dump_xml(fields)) == {k: str(v) for k, v in fields.items()}


def test_cdata_terminator_inside_a_value() -> None:
    assert parse_xml(dump_xml({"a": "x]]>y<z>&"})) == {"a": "x]]>y<z>&"}


def test_plain_and_cdata_values_both_read() -> None:
    body = b"<xml><a>1</a><b><![CDATA[two]]></b><c/></xml>"
    assert parse_xml(body) == {"a": "1", "b": "two", "c": ""}


def test_other_root_when_asked() -> None:
    assert parse_xml(b"<root><a>1</a></root>", root="root") == {"a": "1"}
    with pytest.raises(MalformedMessageError):
        parse_xml(b"<root><a>1</a></root>")


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<xml><a>&lol4;</a></xml>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><a>&xxe;</a></xml>"""
EXTERNAL_DTD = b'<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:1/x.dtd"><xml/>'
PARAMETER_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]><xml/>'
)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
        pytest.param(EXTERNAL_ENTITY, id="external-entity"),
        pytest.param(EXTERNAL_DTD, id="external-dtd"),
        pytest.param(PARAMETER_ENTITY, id="parameter-entity"),
        pytest.param(b"<!DOCTYPE xml><xml><a>1</a></xml>", id="plain-doctype"),
        pytest.param(b"<xml><a>1</a>", id="unclosed"),
        pytest.param(b"<xml><a>1</b></xml>", id="mismatched"),
        pytest.param(b"not xml at all", id="text"),
        pytest.param(b'{"return_code": "SUCCESS"}', id="json"),
        pytest.param(b"<xml><a>1</a><a>2</a></xml>", id="duplicate"),
        pytest.param(b"<xml><a><b>1</b></a></xml>", id="nested"),
        pytest.param(b"<xml><a>1</a></xml><xml/>", id="two-roots"),
        pytest.param(b"<other><a>1</a></other>", id="wrong-root"),
        pytest.param("<xml><a>支付</a></xml>".encode("gbk"), id="gbk"),
        pytest.param(b"<xml><a>\xff\xfe</a></xml>", id="not-utf8"),
        pytest.param(b"", id="empty"),
        pytest.param(b"  \n ", id="blank"),
        pytest.param(b"<xml><a-b>1</a-b></xml>", id="odd-name"),
        pytest.param(b"<xml><ns:a xmlns:ns='urn:x'>1</ns:a></xml>", id="namespace"),
        pytest.param(b"<xml><a>" + b"x" * MAX_BODY_BYTES + b"</a></xml>", id="oversized"),
    ],
)
def test_hostile_input_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        parse_xml(body)


def test_size_limit_is_adjustable() -> None:
    with pytest.raises(MalformedMessageError):
        parse_xml(b"<xml><a>12345</a></xml>", max_bytes=10)


def test_dump_refuses_bad_names() -> None:
    with pytest.raises(MalformedMessageError):
        dump_xml({"a b": "1"})
    with pytest.raises(MalformedMessageError):
        dump_xml({"": "1"})
