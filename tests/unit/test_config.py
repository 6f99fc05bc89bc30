import pytest
from pydantic import ValidationError

from verifyfeed.config import (
    MAX_DELAY_SECONDS,
    AuthCodeUniqueness,
    LegacyIdPolicy,
    Settings,
    UnknownOutcomePolicy,
)


def test_settings_read_from_env_names() -> None:
    settings = Settings.from_env(
        {
            "JOBS_TABLE": "t1",
            "UNKNOWN_OUTCOME_POLICY": "resend",
            "LEGACY_ID_POLICY": "reject",
            "AUTH_CODE_UNIQUENESS": "exact",
            "BLACKOUT_START_DAY": "25",
            "UPSTREAM_READ_TIMEOUT": "",  # empty means default
        }
    )
    assert settings.jobs_table == "t1"
    assert settings.unknown_outcome_policy is UnknownOutcomePolicy.RESEND
    assert settings.legacy_id_policy is LegacyIdPolicy.REJECT
    assert settings.auth_code_uniqueness is AuthCodeUniqueness.EXACT
    assert settings.blackout_start_day == 25
    assert settings.read_timeout_s == 20.0


def test_defaults_are_the_safe_ones() -> None:
    settings = Settings.from_env({})
    assert settings.unknown_outcome_policy is UnknownOutcomePolicy.HOLD
    assert settings.batch_max_records == 1000
    assert settings.blackout_start_day == 27
    assert settings.auth_code_uniqueness is AuthCodeUniqueness.IGNORE_CASE


@pytest.mark.parametrize(
    ("name", "value"),
    [("BATCH_MAX_RECORDS", "1001"), ("UNKNOWN_OUTCOME_POLICY", "maybe"), ("AUTH_CODE_UNIQUENESS", "upper")],
)
def test_invalid_settings_fail_loudly(name: str, value: str) -> None:
    with pytest.raises(ValidationError):
        Settings.from_env({name: value})


UPSTREAM_URLS = ("UPSTREAM_BASE_URL", "AUDIT_BASE_URL")


@pytest.mark.parametrize("name", UPSTREAM_URLS)
@pytest.mark.parametrize(
    "url",
    [
        "https://api.caih.com",
        "https://10.0.0.1:8443/base",
        "http://127.0.0.1:8765",  # the local stack and the tests: the sandbox on loopback
        "http://127.8.9.10",
        "http://[::1]:8765",
        "http://localhost:8765",
    ],
)
def test_upstream_urls_are_https_or_loopback(name: str, url: str) -> None:
    settings = Settings.from_env({name: url})
    assert url in (settings.upstream_base_url, settings.audit_base_url)


@pytest.mark.parametrize("name", UPSTREAM_URLS)
@pytest.mark.parametrize(
    "url",
    [
        "http://api.caih.com",
        "http://10.0.0.1:8765",
        "http://0.0.0.0:8765",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "ftp://api.caih.com",
        "https://",
        "api.caih.com",
    ],
)
def test_plain_http_beyond_loopback_fails_with_a_clear_message(name: str, url: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings.from_env({name: url})
    assert raised.value.errors()[0]["loc"] == (name,)
    assert "is not an https:// URL (plain http:// only to a loopback host" in str(raised.value)


def test_the_audit_base_url_may_stay_empty_and_the_default_is_loopback() -> None:
    settings = Settings.from_env({"AUDIT_BASE_URL": ""})
    assert settings.audit_base_url == "" and settings.upstream_base_url == "http://127.0.0.1:8765"
    assert Settings(audit_base_url="").audit_base_url == ""


def test_429_and_503_are_retried_by_default() -> None:
    """Both say the request was not handled (docs/decisions.md#unknown-outcome); configurable."""
    assert Settings.from_env({}).retry_http_statuses == "429 503"
    assert Settings.from_env({"UPSTREAM_RETRY_HTTP_STATUSES": "429"}).retry_http_statuses == "429"


@pytest.mark.parametrize("name", ["RETRY_AFTER_MAX_SECONDS", "RETRY_MAX_SECONDS"])
def test_no_retry_waits_longer_than_sqs_can_hide_a_message(name: str) -> None:
    """SQS hides a received message for 12 h at most, counted from the receive: the uploader's
    invocation (its Timeout, 120 s) has used some of that when it asks for the delay."""
    assert MAX_DELAY_SECONDS <= 12 * 3600 - 120
    assert Settings.from_env({name: str(MAX_DELAY_SECONDS)})
    with pytest.raises(ValidationError):
        Settings.from_env({name: str(MAX_DELAY_SECONDS + 1)})
