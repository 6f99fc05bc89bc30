import pytest

from verifyfeed.pii import (
    Keyed,
    keyed_digest,
    mask_id,
    mask_name,
    mask_object_key,
    mask_phone,
    spreadsheet_safe,
)
from verifyfeed.rules.hashing import sha256_hex


def test_masks_keep_only_a_few_characters() -> None:
    assert mask_id("11010519491231002X") == "**************002X"
    assert mask_phone("13812345678") == "*******5678"
    assert mask_name("张三丰") == "张**"
    assert mask_id(None) == ""
    assert mask_id("12") == "*2"  # never more than half
    assert mask_id("1234") == "**34"
    assert mask_id("") == ""


def test_spreadsheet_safe_neutralises_formulas() -> None:
    for cell in ("=1+1", "+cmd", "-2", "@SUM(A1)", "\tx"):
        assert spreadsheet_safe(cell).startswith("'")
    assert spreadsheet_safe("plain") == "plain"
    assert spreadsheet_safe("") == ""


def test_keyed_digest_is_hmac_sha256_never_the_bare_digest() -> None:
    # RFC 4231-style published vector: HMAC-SHA256(key="key", "The quick brown fox ...")
    fox = "The quick brown fox jumps over the lazy dog"
    assert keyed_digest(fox, b"key") == "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    pid = "11010519491231002X"
    assert keyed_digest(pid, b"pepper") != sha256_hex(pid)
    assert keyed_digest(pid, b"pepper") != keyed_digest(pid, b"other")
    with pytest.raises(ValueError):
        keyed_digest(pid, b"")


def test_keyed_writes_under_the_current_pepper_and_looks_up_under_both() -> None:
    pid = "11010519491231002X"
    rotating = Keyed(current=b"new", previous=b"old")
    assert rotating.digest(pid) == keyed_digest(pid, b"new")
    assert rotating.candidates(pid) == (keyed_digest(pid, b"new"), keyed_digest(pid, b"old"))
    assert Keyed(current=b"new").candidates(pid) == (keyed_digest(pid, b"new"),)
    assert Keyed(current=b"new", previous=b"new").candidates(pid) == (keyed_digest(pid, b"new"),)
    assert "new" not in repr(rotating) and "old" not in repr(rotating)
    with pytest.raises(ValueError):
        Keyed(current=b"")


def test_object_keys_in_logs_keep_the_folder_and_extension_only() -> None:
    assert mask_object_key("lost-repair/2026/张三名单.csv") == "lost-repair/*.csv"
    assert mask_object_key("reports/lost-repair/李四.csv.json") == "reports/*.json"
    assert mask_object_key("carrier-audit/王五") == "carrier-audit/*"
    assert mask_object_key("赵六.xlsx") == "*.xlsx"
    assert mask_object_key("lost-repair/name.张三的文件") == "lost-repair/*"  # not an extension


def test_the_pepper_comes_from_the_secret_or_locally_from_the_settings_never_empty() -> None:
    from verifyfeed.config import Settings
    from verifyfeed.secrets import ManagedSecrets

    local = ManagedSecrets(
        Settings.from_env({"IDENTITY_PEPPER": "p1", "IDENTITY_PREVIOUS_PEPPER": "p0"})
    ).identity_pepper()
    assert local.candidates("x") == (keyed_digest("x", b"p1"), keyed_digest("x", b"p0"))
    with pytest.raises(ValueError, match="no identity pepper"):
        ManagedSecrets(Settings.from_env({})).identity_pepper()


def test_traces_record_no_s3_object_key() -> None:
    """The X-Ray SDK's botocore patch records an S3 call's Key; the functions drop it (observability)."""
    import copy

    from aws_xray_sdk.ext import boto_utils

    from verifyfeed.observability import keep_object_keys_out_of_traces

    whitelist = copy.deepcopy(boto_utils.whitelist)
    s3 = whitelist["services"]["s3"]["operations"]
    assert "Key" in s3["GetObject"]["request_parameters"]  # what the SDK would record
    keep_object_keys_out_of_traces(whitelist)
    recorded = {p for op in s3.values() for p in op.get("request_parameters", [])}
    assert recorded.isdisjoint({"Key", "CopySource", "Prefix"}) and "VersionId" in recorded
    assert whitelist["services"]["dynamodb"] == boto_utils.whitelist["services"]["dynamodb"]
