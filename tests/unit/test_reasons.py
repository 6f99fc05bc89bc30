"""The reason catalogue (verifyfeed/reasons.py): every code the product can give a customer has a
Chinese and an English text with the same parameters, and every code the code raises is in it."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from verifyfeed.ingest.errors import FileRejected
from verifyfeed.models.records import AuditStatus, JobKind
from verifyfeed.reasons import CATALOGUE, Reason, reason

PACKAGE = Path(__file__).resolve().parents[2] / "layers/core/python/verifyfeed"
# the calls whose first argument is a reason code
RAISERS = {"RuleViolation", "FileRejected", "reason", "Reason"}
OPERATOR_ONLY = {"setting"}  # the name of a setting: for the operator's text only
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def codes_in_source() -> tuple[set[str], set[str]]:
    """Every literal code passed to a reason-raising call in the package, and the literal prefixes of
    the codes built with an f-string (``reason(f"kind.{...}")``)."""
    literal: set[str] = set()
    prefixes: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = (
                func.id
                if isinstance(func, ast.Name)
                else func.attr
                if isinstance(func, ast.Attribute)
                else ""
            )
            if name not in RAISERS:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                literal.add(first.value)
            elif isinstance(first, ast.JoinedStr) and isinstance(first.values[0], ast.Constant):
                prefixes.add(str(first.values[0].value))
    return literal, prefixes


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_code_has_a_chinese_and_an_english_text_with_the_same_parameters(code: str) -> None:
    text = CATALOGUE[code]
    assert text.zh and text.en and text.zh != text.en
    words = re.sub(r"\{[a-z_]+\}", "", text.zh.replace("{ratio}:1", "{ratio}"))
    assert CJK.search(words) or not words, "the Chinese text is Chinese (or only puts Chinese parts together)"
    assert not re.search(r"[,:;()]", words), "Chinese punctuation is full-width"
    assert not re.search(
        r"[\u4e00-\u9fff，：；（）。]",
        text.en.replace("𠀀", "").replace("京A12345", "").replace("粤BD12345", ""),
    ), "the English text has no Chinese words nor full-width punctuation"
    assert placeholders(text.zh) == placeholders(text.en) - OPERATOR_ONLY
    assert re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_\-]+)+", code)


def test_every_code_the_rules_the_readers_and_the_splitter_raise_is_catalogued() -> None:
    literal, prefixes = codes_in_source()
    assert len(literal) > 80  # the scan sees the rules, the readers, the splitter and the reports
    assert {
        "id_number.check_digit",
        "header.missing_columns",
        "file.pdf",
        "duplicate.already_uploaded",
    } <= literal
    assert sorted(literal - set(CATALOGUE)) == []
    assert prefixes == {"kind.", "audit_status."}
    assert all(f"kind.{kind.value}" in CATALOGUE for kind in JobKind)
    assert all(f"audit_status.{status.value}" in CATALOGUE for status in AuditStatus)


def test_a_code_outside_the_catalogue_is_refused_at_once() -> None:
    with pytest.raises(ValueError, match="no catalogue entry"):
        reason("id_number.too_long_ago")
    with pytest.raises(ValueError, match="no catalogue entry"):
        FileRejected("file.too_ugly")


def test_parameters_render_in_each_language() -> None:
    why = reason(
        "header.duplicate_columns",
        columns=(reason("header.labels", field="曾用手机号", labels=("手机号", "曾用手机号(选填)")),),
        where=reason("header.in_row", row=2),
    )
    assert why.en == (
        "more than one column for: 曾用手机号 (手机号, 曾用手机号(选填)) — keep one of each, or rename the "
        "others (header in row 2)"
    )
    assert (
        why.zh == "以下字段各有不止一列：曾用手机号（手机号、曾用手机号(选填)）。"
        "每个字段只保留一列，或给其余的列改名（表头在第 2 行）"
    )
    assert str(why) == why.en and why.as_dict() == {"code": why.code, "zh": why.zh, "en": why.en}


def test_columns_are_renamed_to_the_customer_s_labels_and_nothing_else_is() -> None:
    why = Reason("usage.conditional", (("column", "driverIdCard"), ("usage_column", "usage"), ("usage", "1")))
    named = why.relabelled({"driverIdCard": "司机身份证号码", "usage": "场景", "1": "不该改"})
    assert named.en == "司机身份证号码: required when 场景 is 1"
    assert named.zh == "场景为 1 时必须填写司机身份证号码"
