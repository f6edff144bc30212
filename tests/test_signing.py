"""The V4 signer produces the contract's vectors and agrees with the official SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from videogen.providers.signing import Credentials, sign
from videogen.sandbox.signature import VerifyError, verify

FROZEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
CREDS = Credentials("AKLTtest", "secret")
SUBMIT = {"Action": "CVSync2AsyncSubmitTask", "Version": "2022-08-31"}


def _signature(headers: dict[str, str]) -> str:
    return headers["Authorization"].rsplit("Signature=", 1)[1]


@pytest.mark.parametrize(
    ("body", "host", "expected"),
    [
        (b'{"req_key":"jimeng_t2v_v30","prompt":"a cat"}', "visual.volcengineapi.com",
         "2e775c167684f8a40b1fcf775043f443dca4a96cf6b1a31794adf6111abcff4f"),
        (b'{"req_key": "jimeng_t2v_v30", "prompt": "a cat"}', "visual.volcengineapi.com",
         "4a3e3ed476080613346e89e141829827c4e4aa9f75719f3a0be7880e82b4d77d"),
        (b'{"req_key":"jimeng_t2v_v30","prompt":"a cat"}', "127.0.0.1:8080",
         "1cc83ffb8146535d7b63cb7d416fb0c2b605d6de683c400312b0a1352c60d47a"),
    ],
)  # fmt: skip
def test_signer_reproduces_every_contract_vector(body: bytes, host: str, expected: str) -> None:
    headers = sign(CREDS, method="POST", host=host, path="/", query=SUBMIT, body=body, now=FROZEN)
    assert _signature(headers) == expected
    assert "SignedHeaders=content-type;host;x-content-sha256;x-date," in headers["Authorization"]


def test_first_vector_has_the_documented_body_hash() -> None:
    body = b'{"req_key":"jimeng_t2v_v30","prompt":"a cat"}'
    headers = sign(CREDS, method="POST", host="visual.volcengineapi.com", path="/",
                   query=SUBMIT, body=body, now=FROZEN)  # fmt: skip
    assert headers["X-Content-Sha256"] == (
        "2f281458116057487058e763801dcbee397c7b649f1cf0ab06a3f7d7a8143edb"
    )
    assert headers["X-Date"] == "20260102T030405Z"


def test_session_token_is_signed_as_an_extra_header() -> None:
    body = (b'{"req_key": "jimeng_t2v_v30", "task_id": "7392616336519610409", '
            b'"req_json": "{\\"return_url\\": true}"}')  # fmt: skip
    creds = Credentials("AKLTtest", "secret", "STS2testtoken")
    headers = sign(creds, method="POST", host="visual.volcengineapi.com", path="/",
                   query={"Action": "CVSync2AsyncGetResult", "Version": "2022-08-31"},
                   body=body, now=FROZEN)  # fmt: skip
    assert (
        "SignedHeaders=content-type;host;x-content-sha256;x-date;x-security-token,"
        in (headers["Authorization"])
    )
    assert _signature(headers) == "291176b85742b69c2fe5db8a7948261548854f9053ee2745648c823c1bbebd17"


def test_default_ports_are_dropped_from_the_host() -> None:
    body = b"{}"
    a = sign(CREDS, method="POST", host="visual.volcengineapi.com:443", path="/", query=SUBMIT,
             body=body, now=FROZEN)  # fmt: skip
    b = sign(CREDS, method="POST", host="visual.volcengineapi.com", path="/", query=SUBMIT,
             body=body, now=FROZEN)  # fmt: skip
    assert a == b


def test_verifier_accepts_its_own_signatures_and_names_what_is_wrong() -> None:
    body = b'{"req_key":"jimeng_t2v_v30","prompt":"a cat"}'
    headers = sign(CREDS, method="POST", host="127.0.0.1:8080", path="/", query=SUBMIT,
                   body=body, now=FROZEN)  # fmt: skip
    secrets = {"AKLTtest": "secret"}
    kwargs = {"method": "POST", "path": "/", "query": SUBMIT, "now": FROZEN}
    assert verify(secrets, headers=headers, body=body, **kwargs) == "AKLTtest"  # type: ignore[arg-type]
    with pytest.raises(VerifyError) as tampered:
        verify(secrets, headers=headers, body=body + b" ", **kwargs)  # type: ignore[arg-type]
    assert tampered.value.code == "SignatureDoesNotMatch"
    with pytest.raises(VerifyError) as unknown:
        verify({"other": "x"}, headers=headers, body=body, **kwargs)  # type: ignore[arg-type]
    assert unknown.value.code == "InvalidAccessKey"
    with pytest.raises(VerifyError) as missing:
        verify(secrets, headers={"Host": "127.0.0.1:8080"}, body=body, **kwargs)  # type: ignore[arg-type]
    assert missing.value.code == "MissingAuthenticationToken"
    late = {**kwargs, "now": FROZEN.replace(hour=5)}
    with pytest.raises(VerifyError) as skew:
        verify(secrets, headers=headers, body=body, **late)  # type: ignore[arg-type]
    assert skew.value.code == "InvalidTimestamp"


def test_official_sdk_and_our_signer_produce_the_same_authorization(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from volcengine.auth.SignerV4 import SignerV4
    from volcengine.base.Request import Request
    from volcengine.Credentials import Credentials as SdkCredentials

    body = '{"req_key":"jimeng_t2v_v30","prompt":"a paper boat"}'
    request = Request()
    request.set_shema("https")
    request.set_method("POST")
    request.set_host("visual.volcengineapi.com")
    request.set_path("/")
    request.set_query(SUBMIT)
    request.set_headers({"Content-Type": "application/json", "Host": "visual.volcengineapi.com"})
    request.set_body(body)
    sdk_creds = SdkCredentials("AKLTtest", "secret", "cv", "cn-north-1")
    ours = sign(CREDS, method="POST", host="visual.volcengineapi.com", path="/", query=SUBMIT,
                body=body.encode(), now=FROZEN)  # fmt: skip
    # The SDK reads the clock itself: freeze it at the same instant.
    monkeypatch.setattr(SignerV4, "get_current_format_date", staticmethod(lambda: ours["X-Date"]))
    SignerV4.sign(request, sdk_creds)
    assert request.headers["Authorization"] == ours["Authorization"]


def _signed_only(names: tuple[str, ...], headers: dict[str, str], body: bytes) -> dict[str, str]:
    """``headers`` sent, with a correct signature over only the ``names`` among them."""
    from videogen.providers.signing import signature

    chosen = {k: v for k, v in headers.items() if k.lower() in names}
    signed_list, scope, sig = signature(
        CREDS, method="POST", path="/", query=SUBMIT, headers=chosen, body=body,
        x_date=headers["X-Date"],
    )  # fmt: skip
    auth = f"HMAC-SHA256 Credential=AKLTtest/{scope}, SignedHeaders={signed_list}, Signature={sig}"
    return {**headers, "Authorization": auth}


BODY = b'{"req_key":"jimeng_t2v_v30","prompt":"a cat"}'


def _full(**extra: str) -> dict[str, str]:
    headers = sign(CREDS, method="POST", host="127.0.0.1:8080", path="/", query=SUBMIT,
                   body=BODY, now=FROZEN)  # fmt: skip
    del headers["Authorization"]
    return {**headers, **extra}


@pytest.mark.parametrize(
    ("names", "headers", "words"),
    [
        (("x-date",), _full(), "host, x-content-sha256"),
        (("content-type", "x-date", "x-content-sha256"), _full(), "host"),
        (("content-type", "host", "x-date"), _full(), "x-content-sha256"),
        (("host", "x-date", "x-content-sha256"), _full(), "content-type"),
        (
            ("content-type", "host", "x-date", "x-content-sha256"),
            _full(**{"X-Security-Token": "STS2testtoken"}),
            "x-security-token",
        ),
    ],
)
def test_verifier_refuses_a_signature_that_leaves_sent_headers_unsigned(
    names: tuple[str, ...], headers: dict[str, str], words: str
) -> None:
    """A signature over x-date alone would let the body, host or token be changed in transit."""
    request = _signed_only(names, headers, BODY)
    with pytest.raises(VerifyError) as refused:
        verify({"AKLTtest": "secret"}, method="POST", path="/", query=SUBMIT, headers=request,
               body=BODY, now=FROZEN)  # fmt: skip
    assert refused.value.code == "SignatureDoesNotMatch"
    assert words in refused.value.message


def test_verifier_refuses_a_body_hash_header_that_is_not_the_bodys() -> None:
    """Signed over a hash of another body: the signature checks out, the hash does not."""
    other = b'{"req_key":"jimeng_t2v_v30","prompt":"a dog"}'
    headers = sign(CREDS, method="POST", host="127.0.0.1:8080", path="/", query=SUBMIT,
                   body=other, now=FROZEN)  # fmt: skip
    with pytest.raises(VerifyError) as refused:
        verify({"AKLTtest": "secret"}, method="POST", path="/", query=SUBMIT, headers=headers,
               body=BODY, now=FROZEN)  # fmt: skip
    assert "X-Content-Sha256" in refused.value.message


def test_verifier_accepts_what_the_official_sdk_signs_with_a_session_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK signs content-type, host and every X- header it sends: all accepted."""
    from volcengine.auth.SignerV4 import SignerV4
    from volcengine.base.Request import Request
    from volcengine.Credentials import Credentials as SdkCredentials

    request = Request()
    request.set_shema("https")
    request.set_method("POST")
    request.set_host("visual.volcengineapi.com")
    request.set_path("/")
    request.set_query(SUBMIT)
    request.set_headers({"Content-Type": "application/json", "Host": "visual.volcengineapi.com"})
    request.set_body(BODY.decode())
    sdk_creds = SdkCredentials("AKLTtest", "secret", "cv", "cn-north-1", "STS2testtoken")
    monkeypatch.setattr(
        SignerV4, "get_current_format_date", staticmethod(lambda: "20260102T030405Z")
    )
    SignerV4.sign(request, sdk_creds)
    access_key = verify({"AKLTtest": "secret"}, method="POST", path="/", query=SUBMIT,
                        headers=dict(request.headers), body=BODY, now=FROZEN)  # fmt: skip
    assert access_key == "AKLTtest"
    assert "x-security-token" in request.headers["Authorization"]
