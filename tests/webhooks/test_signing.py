"""Standard Webhooks v1 signing: the specification's test vector, agreement with the PyPI
``standardwebhooks`` package both ways, rotation, and what scanpay's verifier refuses."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from scanpay.webhooks import signing
from scanpay.webhooks.signing import generate_secret, sign_headers, verify

VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_spec_vector() -> None:
    headers = sign_headers([VECTOR_SECRET], VECTOR_ID, VECTOR_TS, VECTOR_BODY)
    assert headers == {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIG,
    }
    assert verify(VECTOR_SECRET, headers, VECTOR_BODY, now=VECTOR_TS + 299) == VECTOR_ID


def test_agrees_with_the_reference_package_both_ways() -> None:
    secret = generate_secret()
    now = int(time.time())
    body = b'{"id":"evt_1","type":"order.paid","data":{"amount":1}}'
    ours = sign_headers([secret], "evt_1", now, body)
    assert Webhook(secret).verify(body, ours)["id"] == "evt_1"
    theirs = Webhook(secret).sign("evt_2", datetime.fromtimestamp(now, UTC), body.decode())
    headers = {"webhook-id": "evt_2", "webhook-timestamp": str(now), "webhook-signature": theirs}
    assert verify(secret, headers, body) == "evt_2"


def test_rotation_any_secret_matches() -> None:
    old, new, other = generate_secret(), generate_secret(), generate_secret()
    now = int(time.time())
    headers = sign_headers([new, old], "evt_r", now, b"{}")
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert verify(secret, headers, b"{}") == "evt_r"
        Webhook(secret).verify(b"{}", headers)
    assert verify([other, old], headers, b"{}") == "evt_r"
    with pytest.raises(signing.WebhookVerificationError, match="no matching"):
        verify(other, headers, b"{}")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h, b: (h, b + b" "), "no matching"),
        (lambda h, b: ({**h, "webhook-id": "evt_other"}, b), "no matching"),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(time.time()) - 301)}, b), "too old"),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(time.time()) + 301)}, b), "too new"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "whole number"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), "missing"),
        (lambda h, b: ({**h, "webhook-signature": "v1a," + h["webhook-signature"][3:]}, b),
         "no matching"),
    ],
)  # fmt: skip
def test_refusals(change: object, message: str) -> None:
    secret = generate_secret()
    body = b'{"a":1}'
    headers = sign_headers([secret], "evt_x", int(time.time()), body)
    changed_headers, changed_body = change(headers, body)  # type: ignore[operator]
    with pytest.raises(signing.WebhookVerificationError, match=message):
        verify(secret, changed_headers, changed_body)
    # the reference package refuses the same messages
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(changed_body, changed_headers)


def test_headers_match_case_insensitively() -> None:
    secret = generate_secret()
    headers = sign_headers([secret], "evt_c", int(time.time()), b"{}")
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify(secret, upper, b"{}") == "evt_c"


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "whsec_not base64!",
        "whsec_" + "QUJD",
        "whsec_" + "A" * 120,
    ],
)
def test_bad_secrets_are_refused_without_echoing_them(secret: str) -> None:
    with pytest.raises(ValueError) as raised:
        signing.secret_key(secret)
    assert secret[6:] not in str(raised.value) or not secret[6:]


def test_generated_secrets_have_the_right_size() -> None:
    for size in (24, 32, 64):
        assert len(signing.secret_key(generate_secret(size))) == size
    with pytest.raises(ValueError):
        generate_secret(16)
