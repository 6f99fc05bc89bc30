"""rules.carrier_audit: one row → AuditParams, every violation listed."""

from __future__ import annotations

import pytest

from verifyfeed.models.carrier_audit import AuditParams
from verifyfeed.rules.carrier_audit import validate_audit_row
from verifyfeed.rules.errors import RowRejected

OWNER_ID = "11010519491231002X"
DRIVER_ID = "440524198001010013"  # check digit computed below in a test


def usage1(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "usage": "1",
        "name": "张三",
        "idCard": OWNER_ID,
        "phone": "13800138000",
        "driverName": "张小三",
        "driverIdCard": DRIVER_ID,
        "attachmentFileUrls": "hukou.jpg",
    }
    base.update(overrides)
    return base


def usage2(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "usage": "2",
        "name": "李四",
        "idCard": OWNER_ID,
        "phone": "13900139000",
        "carLicensePlate": "粤B·D12345",
        "drivingLicenseFilename": "license.jpg",
        "attachmentFileUrls": "agreement.pdf,policy.pdf",
    }
    base.update(overrides)
    return base


def usage3(**overrides: object) -> dict[str, object]:
    return usage2(**{"usage": "3", "attachmentFileUrls": "registration.jpg", **overrides})


def test_driver_id_fixture_is_valid() -> None:
    from verifyfeed.rules.idcard import is_valid_id18

    assert is_valid_id18(DRIVER_ID)
    assert is_valid_id18(OWNER_ID)


def check(values: dict[str, object]) -> AuditParams:
    params = validate_audit_row(values)
    assert AuditParams.model_validate(params.model_dump()) == params
    return params


def test_usage_1_valid() -> None:
    params = check(usage1(idCardFrontFilename="front.jpg", reference="REF-1"))
    assert params.model_dump() == {
        "usage": "1",
        "name": "张三",
        "idCard": OWNER_ID,
        "phone": "13800138000",
        "idCardFrontFilename": "front.jpg",
        "idCardBackFilename": None,
        "driverName": "张小三",
        "driverIdCard": DRIVER_ID,
        "driverIdCardFrontFilename": None,
        "driverIdCardBackFilename": None,
        "carLicensePlate": None,
        "drivingLicenseFilename": None,
        "attachmentFileUrls": "hukou.jpg",
    }


def test_usage_2_valid_and_normalised() -> None:
    params = check(
        usage2(
            name="买买提•艾力",
            idCard="11010519491231002x",
            phone="+86 139 0013 9000",
            attachmentFileUrls="a.pdf，b.pdf , c.pdf",
            idCardBackFilename="",
        )
    )
    assert params.usage == "2"
    assert params.name == "买买提·艾力"
    assert params.idCard == OWNER_ID
    assert params.phone == "13900139000"
    assert params.carLicensePlate == "粤BD12345"
    assert params.attachmentFileUrls == "a.pdf,b.pdf,c.pdf"
    assert params.idCardBackFilename is None


def test_usage_3_valid() -> None:
    params = check(usage3(carLicensePlate="沪A12345D", usage=3))
    assert params.usage == "3"
    assert params.carLicensePlate == "沪A12345D"
    assert params.driverName is None


def test_filenames_kept_verbatim() -> None:
    params = check(usage2(drivingLicenseFilename=" 行驶证（主页）.jpg ", attachmentFileUrls="协议（一）.pdf"))
    assert params.drivingLicenseFilename == "行驶证（主页）.jpg"
    assert params.attachmentFileUrls == "协议（一）.pdf"


def test_attachments_as_list() -> None:
    assert check(usage2(attachmentFileUrls=["a.pdf", " b.pdf"])).attachmentFileUrls == "a.pdf,b.pdf"


def test_nine_attachments_allowed() -> None:
    names = ",".join(f"f{i}.jpg" for i in range(9))
    assert check(usage2(attachmentFileUrls=names)).attachmentFileUrls == names


def rejected(values: dict[str, object]) -> RowRejected:
    with pytest.raises(RowRejected) as info:
        validate_audit_row(values)
    for violation in info.value.violations:
        assert violation.field, violation
        assert violation.message.startswith(f"{violation.field}: ")
    return info.value


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (usage1(usage=""), [("usage.missing", "usage")]),
        (usage1(usage=None), [("usage.missing", "usage")]),
        (usage1(usage="4"), [("usage.value", "usage")]),
        (usage1(usage=1.0), [("usage.value", "usage")]),
        (usage1(usage="one"), [("usage.value", "usage")]),
        (usage1(name="Zhang San"), [("name.characters", "name")]),
        (usage1(name="张" * 21), [("name.length", "name")]),
        (usage1(name=""), [("name.missing", "name")]),
        (usage1(idCard=OWNER_ID[:17] + "1"), [("id_number.check_digit", "idCard")]),
        (usage1(idCard="110105491231002"), [("id_number.legacy_15", "idCard")]),
        (usage1(idCard=110105194912310020), [("id_number.excel_number", "idCard")]),
        (usage1(idCard=None), [("id_number.missing", "idCard")]),
        (usage1(phone="12345"), [("phone.format", "phone")]),
        (usage1(phone=""), [("phone.missing", "phone")]),
        (usage1(idCardFrontFilename="a" * 256), [("filename.length", "idCardFrontFilename")]),
        (usage1(idCardBackFilename="dir/back.jpg"), [("filename.characters", "idCardBackFilename")]),
        (
            usage1(driverIdCardFrontFilename="c:\\x.jpg"),
            [("filename.characters", "driverIdCardFrontFilename")],
        ),
        (usage1(driverIdCardBackFilename="a\tb.jpg"), [("filename.characters", "driverIdCardBackFilename")]),
        (usage1(driverIdCardBackFilename=".."), [("filename.characters", "driverIdCardBackFilename")]),
        (usage1(driverName=None), [("usage.conditional", "driverName")]),
        (usage1(driverName="John"), [("name.characters", "driverName")]),
        (usage1(driverIdCard=""), [("usage.conditional", "driverIdCard")]),
        (usage1(driverIdCard=DRIVER_ID[:17] + "X"), [("id_number.check_digit", "driverIdCard")]),
        (usage1(attachmentFileUrls=None), [("usage.conditional", "attachmentFileUrls")]),
        (usage1(attachmentFileUrls=[]), [("usage.conditional", "attachmentFileUrls")]),
        (usage2(carLicensePlate=None), [("usage.conditional", "carLicensePlate")]),
        (usage2(carLicensePlate="京A1234"), [("plate.format", "carLicensePlate")]),
        (usage2(drivingLicenseFilename=" "), [("usage.conditional", "drivingLicenseFilename")]),
        (usage3(attachmentFileUrls=""), [("usage.conditional", "attachmentFileUrls")]),
        (
            usage2(attachmentFileUrls=",".join(f"f{i}.jpg" for i in range(10))),
            [("attachments.count", "attachmentFileUrls")],
        ),
        (usage2(attachmentFileUrls="a.jpg,,b.jpg"), [("attachments.empty", "attachmentFileUrls")]),
        (usage2(attachmentFileUrls="a.jpg,"), [("attachments.empty", "attachmentFileUrls")]),
        (usage2(attachmentFileUrls="a.jpg,x/b.jpg"), [("filename.characters", "attachmentFileUrls")]),
        (usage2(attachmentFileUrls="a" * 256), [("filename.length", "attachmentFileUrls")]),
        # optional fields that are present are validated whatever the usage
        (usage2(driverName="Bob"), [("name.characters", "driverName")]),
        (usage3(driverIdCard="123"), [("id_number.length", "driverIdCard")]),
        (usage1(carLicensePlate="XYZ"), [("plate.format", "carLicensePlate")]),
    ],
)
def test_each_rule(values: dict[str, object], expected: list[tuple[str, str]]) -> None:
    exc = rejected(values)
    assert [(v.rule, v.field) for v in exc.violations] == expected


def test_all_violations_listed_in_field_order() -> None:
    exc = rejected(
        {
            "usage": "2",
            "name": "Bob",
            "idCard": "123",
            "phone": None,
            "idCardFrontFilename": "a/b",
            "carLicensePlate": "nope",
        }
    )
    assert [(v.rule, v.field) for v in exc.violations] == [
        ("name.characters", "name"),
        ("id_number.length", "idCard"),
        ("phone.missing", "phone"),
        ("filename.characters", "idCardFrontFilename"),
        ("plate.format", "carLicensePlate"),
        ("usage.conditional", "drivingLicenseFilename"),
        ("usage.conditional", "attachmentFileUrls"),
    ]


def test_unknown_usage_skips_conditionals_but_checks_fields() -> None:
    exc = rejected(usage1(usage="9", driverName=None, driverIdCard="bad"))
    assert [(v.rule, v.field) for v in exc.violations] == [
        ("usage.value", "usage"),
        ("id_number.format", "driverIdCard"),
    ]


def test_messages_never_contain_personal_values() -> None:
    values = usage1(
        name="王五六七八九十一二三四五六七八九十一二三",
        idCard="110105194912310021",
        phone="13800138001x",
        driverName="Wang Wu",
        driverIdCard="440524198001010019",
    )
    text = str(rejected(values))
    for key in ("name", "idCard", "phone", "driverName", "driverIdCard"):
        value = values[key]
        assert isinstance(value, str)
        assert value not in text
        assert value[-6:] not in text


def test_every_request_field_of_the_model_has_exactly_one_rule_and_a_header() -> None:
    """One source for the field list (issue 17): the seed's request table is AuditParams
    (test_contract_seeds.py), and the rules, the header mapping and the samples read it from there."""
    from samples.make_samples import CARRIER_AUDIT_HEADER
    from verifyfeed.ingest.headers import CARRIER_AUDIT_FIELDS, CARRIER_AUDIT_REQUIRED
    from verifyfeed.models.carrier_audit import AuditParams
    from verifyfeed.rules.carrier_audit import _VALIDATORS

    fields = list(AuditParams.model_fields)
    assert [f for f, _ in _VALIDATORS] == [f for f in fields if f != "usage"]
    assert list(CARRIER_AUDIT_FIELDS[: len(fields)]) == fields == CARRIER_AUDIT_HEADER
    assert set(CARRIER_AUDIT_REQUIRED) == {"usage", "name", "idCard", "phone"}  # the seed's 是 rows
