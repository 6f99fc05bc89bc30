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
        (["姓名", "身份证号"], "授权码"),
        (["身份证号", "授权码"], "姓名"),
        (["姓名", "手机号", "授权码"], "身份证号"),
        ([], "姓名, 身份证号, 授权码"),
        (["张三", "11010519491231002X", "A1"], "姓名, 身份证号, 授权码"),  # data row, no header
    ],
)
def test_missing_required(cells: list[str], missing: str) -> None:
    """Named as the customer knows the columns (the spec's labels), in both languages."""
    with pytest.raises(FileRejected) as info:
        map_header(cells, LR)
    assert info.value.code == "header.missing_columns"
    assert info.value.reason == f"missing required column(s): {missing}"
    assert info.value.zh == f"缺少必需的列：{missing.replace(', ', '、')}"
    assert "11010519491231002X" not in info.value.reason


def test_duplicate_columns() -> None:
    with pytest.raises(FileRejected) as info:
        map_header(["姓名", "身份证号", "证件号码", "授权码", "name"], LR)
    assert info.value.reason == (
        "more than one column for: 姓名 (姓名, name), 身份证号 (身份证号, 证件号码)"
        " — keep one of each, or rename the others"
    )
    assert info.value.zh == (
        "以下字段各有不止一列：姓名（姓名、name）、身份证号（身份证号、证件号码）。每个字段只保留一列，或给其余的列改名"
    )


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
    assert info.value.reason == "missing required column(s): 车老板身份证号, 车老板手机号"


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


# ---- annotations, synonyms, ambiguity (decisions.md#header-synonyms) ------------------------------


@pytest.mark.parametrize(
    ("cell", "key"),
    [
        ("曾用手机号（选填）", "曾用手机号"),
        ("手机号(非必填)", "手机号"),
        ("曾用手机号 (选填) ", "曾用手机号"),
        ("【必填】姓名", "姓名"),
        ("姓名【必填】", "姓名"),
        ("身份证号[18位]", "身份证号"),
        ("身份证号［18位］", "身份证号"),  # full-width square brackets
        ("授权码〔合同编号〕", "授权码"),
        ("授权码{选填}", "授权码"),
        ("授权码《协议》", "授权码"),
        ("授权码〈注〉", "授权码"),
        ("授权码〖注〗", "授权码"),
        ("*身份证号(必填)(18位)*", "身份证号"),
        ("(姓名)", "姓名"),  # all annotation: the content is the label
        ("【授权码】", "授权码"),
        ("授权码：", "授权码"),  # full-width colon
    ],
)
def test_annotations_are_stripped(cell: str, key: str) -> None:
    assert normalize_header(cell) == key


@pytest.mark.parametrize(
    ("label", "field"),
    [
        ("曾用手机号（选填）", "used_phone"),
        ("手机号(非必填)", "used_phone"),
        ("联系电话", "used_phone"),
        ("原手机号", "used_phone"),
        ("原手机号码", "used_phone"),
        ("手机", "used_phone"),
        ("姓名", "name"),
        ("名字", "name"),
        ("失联人姓名", "name"),
        ("身份证号", "id_number"),
        ("身份证号码", "id_number"),
        ("证件号码", "id_number"),
        ("身份证号码（18位）", "id_number"),
        ("授权码", "auth_code"),
        ("合同编号", "auth_code"),
        ("协议编号", "auth_code"),
        ("Contract No", "auth_code"),
    ],
)
def test_lost_repair_synonyms(label: str, field: str) -> None:
    required = {"name": "姓名", "id_number": "身份证号", "auth_code": "授权码"}
    cells = [label] + [text for f, text in required.items() if f != field]
    header = map_header(cells, LR)
    assert header.columns[0] == field
    assert header.ignored == ()


def test_the_phone_column_of_a_seed_sheet_is_used() -> None:
    cells = ["序号", "姓名", "身份证号码", "曾用手机号（选填）", "授权码(合同编号)", "备注(非必填)"]
    header = map_header(cells, LR)
    assert header.columns == {1: "name", 2: "id_number", 3: "used_phone", 4: "auth_code"}
    assert header.ignored == ("序号", "备注(非必填)")  # reported as written


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (
            ["姓名", "身份证号", "手机号", "曾用手机号（选填）", "授权码"],
            "more than one column for: 曾用手机号 (手机号, 曾用手机号(选填))",  # labels as cleaned (NFKC)
        ),
        (
            ["姓名", "身份证号", "联系电话", "原手机号", "授权码"],
            "more than one column for: 曾用手机号 (联系电话, 原手机号)",
        ),
        (["姓名", "名字", "身份证号", "授权码"], "more than one column for: 姓名 (姓名, 名字)"),
        (
            ["姓名", "身份证号", "授权码", "合同编号"],
            "more than one column for: 授权码 (授权码, 合同编号)",
        ),
    ],
)
def test_two_synonyms_of_one_field_reject_the_file_naming_both(cells: list[str], reason: str) -> None:
    with pytest.raises(FileRejected) as info:
        map_header(cells, LR)
    assert info.value.reason.startswith(reason)


def test_labels_that_look_like_values_are_masked() -> None:
    header = map_header(["姓名", "身份证号", "授权码", "110105199003071234", "2026年12月"], LR)
    assert header.ignored == ("**************1234", "2026年12月")


def test_no_alias_maps_to_two_fields_after_normalisation() -> None:
    from verifyfeed.ingest.headers import CARRIER_AUDIT_ALIASES, LOST_REPAIR_ALIASES

    for table in (LOST_REPAIR_ALIASES, CARRIER_AUDIT_ALIASES):
        assert all(key == normalize_header(key) for key in table)  # keys are normal forms
    assert LOST_REPAIR_ALIASES[normalize_header("联系电话")] == "used_phone"
    assert "联系人电话" not in LOST_REPAIR_ALIASES  # another person's number: never guessed


def test_header_facts_for_the_report() -> None:
    header = map_header(["姓名", "身份证号", "授权码", "备注"], LR)
    assert header.facts() == {"header_row": 1, "ignored_columns": ["备注"], "notes": []}
