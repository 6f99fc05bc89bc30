"""ingest.headers: header normalisation, mapping and kind detection."""

from __future__ import annotations

import pytest

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.ingest.headers import (
    CARRIER_AUDIT_FIELDS,
    detect_kind,
    map_header,
    normalize_header,
)
from verifyfeed.models.records import JobKind

LR = JobKind.LOST_REPAIR
CA = JobKind.CARRIER_AUDIT


@pytest.mark.parametrize(
    ("cell", "key"),
    [
        ("姓名", "姓名"),
        (" ID No ", "idno"),
        ("id_no", "idno"),
        ("ID-Number", "idnumber"),
        ("身份证号*", "身份证号"),
        ("*身份证号", "身份证号"),
        ("身份证号(必填)", "身份证号"),
        ("身份证号（必填）", "身份证号"),  # full-width parentheses
        ("身份证号 （必填） *", "身份证号"),
        ("授权码:", "授权码"),
        ("ＡｕｔｈＣｏｄｅ", "authcode"),
        ("身份证\n号码", "身份证号码"),  # wrapped header cell
        (None, ""),
        (123, "123"),
    ],
)
def test_normalize_header(cell: object, key: str) -> None:
    assert normalize_header(cell) == key


@pytest.mark.parametrize(
    "cells",
    [
        ["姓名", "身份证号", "曾用手机号", "授权码"],
        ["名字", "身份证号码", "手机号码", "合同编号"],
        ["客户姓名", "证件号码", "曾用号码", "合同号"],
        ["Name", "ID Number", "Used Phone", "Auth Code"],
        ["fullname", "idcode", "usedPhone", "authCode"],
        ["name", "id", "mobile", "auth"],
        ["NAME*", "ID_CARD(必填)", "PHONE", "AUTH_CODE*"],
    ],
)
def test_lost_repair_aliases(cells: list[str]) -> None:
    header = map_header(cells, LR)
    assert header.columns == {0: "name", 1: "id_number", 2: "used_phone", 3: "auth_code"}
    assert header.ignored == ()
    assert header.width == 4
    assert detect_kind(cells) is LR


def test_optional_phone_may_be_absent_and_order_is_free() -> None:
    header = map_header(["授权码", "备注", "身份证号", "姓名", "", ""], LR)
    assert header.columns == {0: "auth_code", 2: "id_number", 3: "name"}
    assert header.fields == ("auth_code", "id_number", "name")
    assert header.ignored == ("备注",)
    assert header.width == 4


def test_ignored_labels_are_cut() -> None:
    header = map_header(["姓名", "身份证号", "授权码", "x" * 100], LR)
    assert header.ignored == ("x" * 40,)


@pytest.mark.parametrize(
    ("cells", "missing"),
    [
        (["姓名", "身份证号"], "auth_code"),
        (["身份证号", "授权码"], "name"),
        (["姓名", "手机号", "授权码"], "id_number"),
        ([], "name, id_number, auth_code"),
        (["张三", "11010519491231002X", "A1"], "name, id_number, auth_code"),  # data row, no header
    ],
)
def test_missing_required(cells: list[str], missing: str) -> None:
    with pytest.raises(FileRejected) as info:
        map_header(cells, LR)
    assert info.value.reason == f"missing required column(s): {missing}"
    assert "11010519491231002X" not in info.value.reason


def test_duplicate_columns() -> None:
    with pytest.raises(FileRejected) as info:
        map_header(["姓名", "身份证号", "证件号码", "授权码", "name"], LR)
    assert info.value.reason == "more than one column for: name, id_number"


SPEC_LABELS = {
    "usage": "核验场景",
    "name": "车老板姓名",
    "idCard": "车老板身份证号",
    "phone": "车老板手机号",
    "idCardFrontFilename": "车老板身份证正面照 Filename",
    "idCardBackFilename": "车老板身份证背面照 Filename",
    "driverName": "司机姓名",
    "driverIdCard": "司机身份证号",
    "driverIdCardFrontFilename": "司机身份证正面照 Filename",
    "driverIdCardBackFilename": "司机身份证背面照 Filename",
    "carLicensePlate": "车牌号",
    "drivingLicenseFilename": "行驶证主副页照 Filename",
    "attachmentFileUrls": "证明材料 Filename列表,多个文件用“,”隔开",
    "reference": "业务编号",
}


def test_carrier_audit_english_names_any_case() -> None:
    for transform in (str, str.lower, str.upper):
        cells = [transform(field) for field in CARRIER_AUDIT_FIELDS]
        header = map_header(cells, CA)
        assert list(header.columns.values()) == list(CARRIER_AUDIT_FIELDS)
        assert detect_kind(cells) is CA


def test_carrier_audit_spec_chinese_labels() -> None:
    cells = list(SPEC_LABELS.values())
    header = map_header(cells, CA)
    assert list(header.columns.values()) == list(SPEC_LABELS)
    assert detect_kind(cells) is CA


@pytest.mark.parametrize(
    ("label", "field"),
    [
        ("车老板身份证正面照", "idCardFrontFilename"),
        ("行驶证主副页照", "drivingLicenseFilename"),
        ("证明材料", "attachmentFileUrls"),
        ("证明材料Filename列表", "attachmentFileUrls"),
        ("车牌号码", "carLicensePlate"),
        ("Ref", "reference"),
        ("参考号", "reference"),
    ],
)
def test_carrier_audit_short_labels(label: str, field: str) -> None:
    header = map_header(["usage", "name", "idCard", "phone", label], CA)
    assert header.columns[4] == field


def test_carrier_audit_missing_required() -> None:
    with pytest.raises(FileRejected) as info:
        map_header(["核验场景", "车老板姓名", "车牌号"], CA)
    assert info.value.reason == "missing required column(s): idCard, phone"


@pytest.mark.parametrize(
    ("cells", "kind"),
    [
        (["usage", "name", "idCard", "phone"], CA),
        (["核验场景", "车老板身份证号"], CA),
        (["姓名", "身份证号", "授权码"], LR),
        (["name", "idcard", "authCode"], LR),  # idcard without usage: lost-repair
        (["name", "idCard", "phone"], None),
        (["姓名", "身份证号"], None),
        ([], None),
        ([None, 1, "x"], None),
    ],
)
def test_detect_kind(cells: list[object], kind: JobKind | None) -> None:
    assert detect_kind(cells) is kind
