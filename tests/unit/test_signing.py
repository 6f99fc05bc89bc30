import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from verifyfeed.upstream.auth import Credentials, build_authinfo, verify_authinfo
from verifyfeed.upstream.signing import sign_body, verify_sign

BODY = b'{"apiId":"a","serviceName":"auditCarrierAudit","id":1,"status":1}'


def test_sign_is_hmac_sha256_hex_of_the_raw_body() -> None:
    expected = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert sign_body(BODY, "s3cret") == expected


def test_verify_accepts_current_and_previous_secret_and_upper_case_hex() -> None:
    assert verify_sign(BODY, sign_body(BODY, "new"), ["new", "old"])
    assert verify_sign(BODY, sign_body(BODY, "old"), ["new", "old"])
    assert verify_sign(BODY, sign_body(BODY, "new").upper(), ["new"])


def test_verify_refuses_wrong_secret_tampered_body_and_missing_sign() -> None:
    good = sign_body(BODY, "new")
    assert not verify_sign(BODY, sign_body(BODY, "other"), ["new", "old"])
    assert not verify_sign(BODY.replace(b'"status":1', b'"status":2'), good, ["new"])
    assert not verify_sign(BODY + b" ", good, ["new"])
    assert not verify_sign(BODY, None, ["new"])
    assert not verify_sign(BODY, "", ["new"])
    assert not verify_sign(BODY, good, [])
    assert not verify_sign(BODY, good, [""])


def test_authinfo_round_trip_and_refusals() -> None:
    creds = Credentials(api_id="id-1", api_key="key-1")
    now = datetime(2026, 11, 25, tzinfo=UTC)
    info = build_authinfo(creds, now)
    assert info.apiId == "id-1" and "key-1" not in info.model_dump_json()
    assert verify_authinfo(info, creds, now)
    assert not verify_authinfo(info, Credentials(api_id="id-1", api_key="other"), now)
    assert not verify_authinfo(info, Credentials(api_id="id-2", api_key="key-1"), now)
    assert not verify_authinfo(info, creds, now + timedelta(minutes=10))
    tampered = info.model_copy(update={"nonce": "0" * 32})
    assert not verify_authinfo(tampered, creds, now)


def test_credentials_repr_hides_the_key() -> None:
    assert "key-1" not in repr(Credentials(api_id="id-1", api_key="key-1"))
