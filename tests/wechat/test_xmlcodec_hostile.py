"""parse_xml on hostile and odd input: each refusal with its message, each tolerated oddity read."""

from __future__ import annotations

import pytest

from scanpay.errors import MalformedMessageError
from scanpay.wechat.xmlcodec import MAX_BODY_BYTES, dump_xml, parse_xml

LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<xml><a>&lol3;</a></xml>"""
QUADRATIC = (
    b'<!DOCTYPE xml [<!ENTITY big "' + b"x" * 20_000 + b'">]><xml><a>'
    + b"&big;" * 8_000
    + b"</a></xml>"
)  # fmt: skip
DOCTYPE = "XML with a DOCTYPE is refused"
WELL_FORMED = "body is not well-formed XML"
NESTED = "element <a> must not contain elements"
BETWEEN = "text outside the fields of <xml>"
NAME = "unexpected element name"
ROOT = "root element must be <xml>"
ENCODING = "XML declares an encoding other than UTF-8"

HOSTILE: list[tuple[str, bytes, str]] = [
    # what defusedxml was there for: every DOCTYPE is refused before its subset is read
    ("billion-laughs", LAUGHS, DOCTYPE),
    ("quadratic-blowup", QUADRATIC, DOCTYPE),
    ("external-entity", b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml/>', DOCTYPE),
    ("external-dtd", b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/x.dtd"><xml/>', DOCTYPE),
    ("public-dtd", b'<!DOCTYPE xml PUBLIC "-//x//y" "http://127.0.0.1:1/y"><xml/>', DOCTYPE),
    ("parameter-entity", b'<!DOCTYPE x [<!ENTITY % p SYSTEM "file:///x"> %p;]><xml/>', DOCTYPE),
    ("unparsed-entity", b'<!DOCTYPE x [<!ENTITY u SYSTEM "x" NDATA n>]><xml/>', DOCTYPE),
    ("notation", b'<!DOCTYPE x [<!NOTATION n SYSTEM "x">]><xml/>', DOCTYPE),
    ("element-decl", b"<!DOCTYPE x [<!ELEMENT xml ANY>]><xml/>", DOCTYPE),
    ("attlist-default", b'<!DOCTYPE x [<!ATTLIST a b CDATA "1">]><xml><a/></xml>', DOCTYPE),
    ("empty-doctype", b"<!DOCTYPE xml><xml><a>1</a></xml>", DOCTYPE),
    ("undeclared-entity", b"<xml><a>&xxe;</a></xml>", WELL_FORMED),
    ("xinclude-is-just-a-name", b'<xml><xi:include xmlns:xi="urn:x" href="/"/></xml>', NAME),
    # size, emptiness, encoding
    ("empty", b"", "empty body"),
    ("blank", b" \r\n\t ", "empty body"),
    ("oversized", b"<xml><a>" + b"x" * MAX_BODY_BYTES + b"</a></xml>", "body larger than"),
    ("not-utf8", b"<xml><a>\xff\xfe</a></xml>", "body is not UTF-8"),
    ("gbk", "<xml><a>支付</a></xml>".encode("gbk"), "body is not UTF-8"),
    ("utf16", "<xml><a>1</a></xml>".encode("utf-16"), "body is not UTF-8"),
    ("overlong-utf8", b"<xml><a>\xc0\xbc</a></xml>", "body is not UTF-8"),
    ("surrogate-utf8", b"<xml><a>\xed\xa0\x80</a></xml>", "body is not UTF-8"),
    ("declared-latin1", b'<?xml version="1.0" encoding="ISO-8859-1"?><xml/>', ENCODING),
    ("declared-ascii", b'<?xml version="1.0" encoding="US-ASCII"?><xml/>', ENCODING),
    ("declared-utf16", b'<?xml version="1.0" encoding="UTF-16"?><xml/>', ENCODING),
    ("declared-unknown", b'<?xml version="1.0" encoding="no-such"?><xml/>', ENCODING),
    # not well-formed
    ("text", b"not xml at all", WELL_FORMED),
    ("json", b'{"return_code": "SUCCESS"}', WELL_FORMED),
    ("unclosed", b"<xml><a>1</a>", WELL_FORMED),
    ("mismatched", b"<xml><a>1</b></xml>", WELL_FORMED),
    ("two-roots", b"<xml><a>1</a></xml><xml/>", WELL_FORMED),
    ("trailing-garbage", b"<xml><a>1</a></xml>trailing", WELL_FORMED),
    ("nul-byte", b"<xml><a>\x00</a></xml>", WELL_FORMED),
    ("nul-reference", b"<xml><a>&#0;</a></xml>", WELL_FORMED),
    ("control-char", b"<xml><a><![CDATA[\x01]]></a></xml>", WELL_FORMED),
    ("non-character", "<xml><a>\ufffe</a></xml>".encode(), WELL_FORMED),
    ("cdata-end-in-text", b"<xml><a>x]]>y</a></xml>", WELL_FORMED),
    ("bare-ampersand", b"<xml><a>a&b</a></xml>", WELL_FORMED),
    ("digit-first-name", b"<xml><1a>1</1a></xml>", WELL_FORMED),
    ("unbound-prefix", b"<xml><a p:x='1'>v</a></xml>", WELL_FORMED),
    ("duplicate-attribute", b"<xml><a x='1' x='2'>v</a></xml>", WELL_FORMED),
    ("declaration-not-first", b' <?xml version="1.0"?><xml/>', WELL_FORMED),
    # well-formed, but not a flat v2 message
    ("wrong-root", b"<other><a>1</a></other>", ROOT),
    ("namespaced-root", b"<xml xmlns='urn:x'><a>1</a></xml>", ROOT),
    ("prefixed-root", b"<p:xml xmlns:p='urn:x'/>", ROOT),
    ("nested", b"<xml><a><b>1</b></a></xml>", NESTED),
    ("nested-empty", b"<xml><a>1<b/></a></xml>", NESTED),
    ("deeply-nested", b"<xml><a>" + b"<b>" * 5_000 + b"</b>" * 5_000 + b"</a></xml>", NESTED),
    ("duplicate", b"<xml><a>1</a><a>2</a></xml>", "duplicate element <a>"),
    ("duplicate-cdata", b"<xml><a><![CDATA[1]]></a><a/></xml>", "duplicate element <a>"),
    ("odd-name", b"<xml><a-b>1</a-b></xml>", NAME),
    ("dotted-name", b"<xml><a.b>1</a.b></xml>", NAME),
    ("non-ascii-name", "<xml><金额>1</金额></xml>".encode(), NAME),
    ("namespace", b"<xml><ns:a xmlns:ns='urn:x'>1</ns:a></xml>", NAME),
    ("default-namespace", b"<xml><a xmlns='urn:x'>1</a></xml>", NAME),
    ("text-before-fields", b"<xml>junk<a>1</a></xml>", BETWEEN),
    ("text-between-fields", b"<xml><a>1</a>junk<b>2</b></xml>", BETWEEN),
    ("text-after-fields", b"<xml><a>1</a>junk</xml>", BETWEEN),
    ("text-only-root", b"<xml>SUCCESS</xml>", BETWEEN),
    ("cdata-in-root", b"<xml><![CDATA[x]]><a>1</a></xml>", BETWEEN),
    ("reference-in-root", b"<xml>&#65;</xml>", BETWEEN),
    ("ideographic-space-in-root", "<xml>\u3000<a>1</a></xml>".encode(), BETWEEN),
]


@pytest.mark.parametrize(("body", "message"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_refused_with_its_message(body: bytes, message: str) -> None:
    with pytest.raises(MalformedMessageError) as refused:
        parse_xml(body)
    assert refused.value.message.startswith(message)


TOLERATED: list[tuple[str, bytes, dict[str, str]]] = [
    ("declaration", b'<?xml version="1.0" encoding="UTF-8"?><xml><a>1</a></xml>', {"a": "1"}),
    ("declaration-utf8-alias", b"<?xml version='1.0' encoding='utf8'?><xml/>", {}),
    ("declaration-standalone", b'<?xml version="1.0" standalone="yes"?><xml/>', {}),
    ("bom", b"\xef\xbb\xbf<xml><a>1</a></xml>", {"a": "1"}),
    ("pretty", b"\n<xml>\n  <a><![CDATA[1]]></a>\r\n\t<b>2</b>\n</xml>\n\n", {"a": "1", "b": "2"}),
    ("attributes-ignored", b"<xml id='9'><a x='1' y=\"2\">v</a></xml>", {"a": "v"}),
    ("bound-prefix-attribute", b"<xml><a xmlns:p='u' p:x='1'>v</a></xml>", {"a": "v"}),
    ("comment-joins-text", b"<xml><!--c--><a>1<!-- x -->2</a></xml><!--t-->", {"a": "12"}),
    ("pi-joins-text", b"<?pi?><xml><a>1<?pi x?>2</a><?pi?></xml>", {"a": "12"}),
    ("mixed-cdata-and-text", b"<xml><a>x<![CDATA[<y>&]]>z</a></xml>", {"a": "x<y>&z"}),
    ("split-cdata", b"<xml><a><![CDATA[]]]]><![CDATA[>]]></a></xml>", {"a": "]]>"}),
    ("references", b"<xml><a>&lt;&gt;&amp;&quot;&apos;&#x41;&#66;</a></xml>", {"a": "<>&\"'AB"}),
    ("lone-brackets", b"<xml><a>]x]]</a><b><![CDATA[]]]></b></xml>", {"a": "]x]]", "b": "]"}),
    ("crlf-normalised", b"<xml><a>1\r\n2\r3</a></xml>", {"a": "1\n2\n3"}),
    ("whitespace-kept", b"<xml><a> </a><b><![CDATA[\n]]></b></xml>", {"a": " ", "b": "\n"}),
    ("empty-forms", b"<xml><a/><b></b><c><![CDATA[]]></c></xml>", {"a": "", "b": "", "c": ""}),
    ("root-like-names", b"<xml><xml>1</xml><xmlns>2</xmlns></xml>", {"xml": "1", "xmlns": "2"}),
    ("underscore-and-digits", b"<xml><_>1</_><a1_B>2</a1_B></xml>", {"_": "1", "a1_B": "2"}),
    ("astral-text", "<xml><a>😀</a></xml>".encode(), {"a": "😀"}),
    ("long-text", b"<xml><a>" + b"x" * 60_000 + b"</a></xml>", {"a": "x" * 60_000}),
]


@pytest.mark.parametrize(
    ("body", "fields"), [c[1:] for c in TOLERATED], ids=[c[0] for c in TOLERATED]
)
def test_tolerated_forms_read(body: bytes, fields: dict[str, str]) -> None:
    assert parse_xml(body) == fields


@pytest.mark.parametrize(
    "body",
    [
        b"<xml></xml>" + b" " * 60_000,
        b" " * 60_000 + b"<xml></xml>",
        b"<xml>" + b"\n" * 60_000 + b"</xml>",
        b"<xml>" + b"<a>1</a>\n" * 6_000 + b"</xml>",
        b"<xml>" + b"<a><![CDATA[x" * 5_000 + b"</xml>",
        b"<xml>" + b"<a>" * 15_000 + b"</xml>",
    ],
    ids=["trailing-space", "leading-space", "inner-newlines", "many-fields", "open-cdata", "opens"],
)
def test_large_regular_bodies_end_quickly(body: bytes) -> None:
    # Once quadratic: a search restarting at each position of a long whitespace run. The body
    # either reads or is refused; a regression shows up as a test that takes seconds.
    try:
        fields = parse_xml(body)
    except MalformedMessageError:
        return
    assert len(fields) <= 1


def test_root_text_check_uses_the_root_asked_for() -> None:
    with pytest.raises(MalformedMessageError, match="text outside the fields of <root>"):
        parse_xml(b"<root>x<a>1</a></root>", root="root")
    assert parse_xml(b"<root>\n<a>1</a>\n</root>", root="root") == {"a": "1"}


def test_values_with_markup_round_trip() -> None:
    fields = {"a": "<b>&amp;</b>", "b": "]]>", "c": "x]]>]]>y", "d": "]", "e": "\t\n"}
    assert parse_xml(dump_xml(fields)) == fields
