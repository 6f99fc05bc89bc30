import pytest
from pydantic import ValidationError

from verifyfeed.config import AuthCodeUniqueness, LegacyIdPolicy, Settings, UnknownOutcomePolicy


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
