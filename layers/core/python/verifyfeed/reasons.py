"""Every reason a customer sees, by stable code: a Chinese text (zh-CN, for the customer) and an
English one (for the operator). ``CATALOGUE`` maps each code to its two ``str.format`` templates; a
``Reason`` is a code and its parameters, never a cell value, since reasons go to logs and reports.
Why, and why codes are never renamed: docs/decisions.md#reason-catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Literal

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")
type Param = int | str | Reason | tuple[int | str | Reason, ...]

_JOIN: dict[Language, str] = {"zh": "、", "en": ", "}


@dataclass(frozen=True, slots=True)
class Text:
    zh: str
    en: str


# {column}: the column's label as the customer's header has it (logic/reports.py passes it)
_FIELD = {
    "name.missing": Text(
        "{column}为空",
        "{column}: required value is empty",
    ),
    "name.length": Text(
        "{column}超过 {max} 个字{note}",
        "{column}: longer than {max} characters{note}",
    ),
    "name.characters": Text(
        "{column}{detail}",
        "{column}: {detail}",
    ),
    "id_number.missing": Text(
        "{column}为空",
        "{column}: required value is empty",
    ),
    "id_number.excel_number": Text(
        "{column}被 Excel 存成了数字，后几位可能已丢失：请把该列设为文本格式后重新填写",
        "{column}: stored as a number by Excel; digits may be lost — format the column as text",
    ),
    "id_number.format": Text(
        "{column}格式不对：应为 17 位数字加 1 位数字或 X",
        "{column}: must be 17 digits followed by a digit or X",
    ),
    "id_number.legacy_15": Text(
        "{column}是 15 位旧号码，不予接受：请填写 18 位号码",
        "{column}: 15-digit legacy number is not accepted; use the 18-digit number",
    ),
    "id_number.length": Text(
        "{column}位数不对：应为 18 位（或 15 位旧号码）",
        "{column}: must be 18 characters (or a 15-digit legacy number)",
    ),
    "id_number.birth_date": Text(
        "{column}中的出生日期不是 1900 年以后的有效日期",
        "{column}: birth date part is not a valid date from 1900 on",
    ),
    "id_number.check_digit": Text(
        "{column}校验位不符",
        "{column}: check digit does not match",
    ),
    "phone.missing": Text(
        "{column}为空",
        "{column}: required value is empty",
    ),
    "phone.format": Text(
        "{column}不是 11 位中国大陆手机号", "{column}: must be an 11-digit mainland mobile number"
    ),
    "auth_code.missing": Text(
        "{column}为空",
        "{column}: required value is empty",
    ),
    "auth_code.format": Text(
        "{column}只能是 1 到 {max} 位英文字母或数字", "{column}: must be 1 to {max} ASCII letters or digits"
    ),
    "auth_code.excel_number": Text(
        "{column}被 Excel 存成了数字，可能已丢失位数：请把该列设为文本格式后重新填写",
        "{column}: stored as a number by Excel; digits may be lost — format the column as text",
    ),
    "plate.format": Text(
        "{column}不是有效的车牌号（如 京A12345 或 粤BD12345）",
        "{column}: must be a Chinese licence plate such as 京A12345 or 粤BD12345",
    ),
    "usage.missing": Text(
        "{column}为空",
        "{column}: required value is empty",
    ),
    "usage.value": Text(
        "{column}只能是 1、2 或 3",
        "{column}: must be 1, 2 or 3",
    ),
    "usage.conditional": Text(
        "{usage_column}为 {usage} 时必须填写{column}", "{column}: required when {usage_column} is {usage}"
    ),
    "filename.length": Text(
        "{column}中的文件名超过 {max} 个字符", "{column}: must be at most {max} characters"
    ),
    "filename.characters": Text(
        "{column}中的文件名不能包含 / \\ 或控制字符",
        "{column}: must be a plain file name without / \\ or control characters",
    ),
    "attachments.count": Text(
        "{column}最多 {max} 个文件名",
        "{column}: at most {max} file names",
    ),
    "attachments.empty": Text(
        "{column}的文件名列表中有空项",
        "{column}: empty file name in the list",
    ),
}

# the parts of a reason: what exactly is wrong (``detail``, ``note``, ``why``, ``where``)
_PARTS = {
    "detail.formula_start": Text(
        "不能以 =、+、- 或 @ 开头",
        "must not start with =, +, - or @",
    ),
    "detail.letter_first": Text(
        "必须以文字开头",
        "must start with a letter",
    ),
    "detail.repair_name_characters": Text(
        "只能包含文字、空格和 · ' - . 这几个符号", "may contain only letters, spaces and the marks · ' - ."
    ),
    "detail.separator_last": Text(
        "不能以分隔符结尾",
        "must not end with a separator",
    ),
    "detail.owner_name_characters": Text(
        "只能包含汉字，以及汉字之间的间隔号 ·",
        "only Chinese characters and the middle dot · between them are allowed",
    ),
    "note.utf16": Text(
        "（𠀀 这类生僻字按 2 个字计）",
        " (a rare character such as 𠀀 counts as 2)",
    ),
    "note.letter_case": Text(
        "（字母不区分大小写）",
        " (letter case ignored)",
    ),
    "why.no_such_record": Text(
        "没有这条核验记录", "no audit with this record id (verifyfeed audits --status rejected lists them)"
    ),
    "why.not_rejected": Text(
        "该核验{status}，只有被驳回（或更正失败）的核验才能更正",
        "the audit is {status}: only a rejected audit (or one whose correction failed) is corrected",
    ),
    "header.in_row": Text(
        "（表头在第 {row} 行）",
        " (header in row {row})",
    ),
    "header.in_sheet": Text(
        "（工作表 {sheet}）",
        " (worksheet {sheet})",
    ),
    "header.labels": Text(
        "{field}（{labels}）",
        "{field} ({labels})",
    ),
    "kind.lost-repair": Text(
        "失联修复",
        "lost-repair",
    ),
    "kind.carrier-audit": Text(
        "车老板核验",
        "carrier-audit",
    ),
    "audit_status.submitting": Text(
        "正在提交",
        "submitting",
    ),
    "audit_status.pending": Text(
        "审核中",
        "pending",
    ),
    "audit_status.passed": Text(
        "已通过",
        "passed",
    ),
    "audit_status.rejected": Text(
        "已驳回",
        "rejected",
    ),
    "audit_status.failed": Text(
        "提交失败",
        "failed",
    ),
    "audit_status.unknown": Text(
        "结果未知",
        "unknown",
    ),
}

# why the reader could not read a row faithfully (``row.unreadable``'s ``problem``)
_PROBLEMS = {
    "problem.encoding": Text(
        "含有不是 {encoding} 编码的字节", "encoding: invalid byte sequence for {encoding}"
    ),
    "problem.nul": Text(
        "含有 NUL 字符",
        "contains NUL characters",
    ),
    "problem.line_too_long": Text(
        "这一行超过 {max} 个字符",
        "line longer than {max} characters",
    ),
    "problem.line_too_long_bytes": Text(
        "这一行超过 {max} 字节",
        "line longer than {max} bytes",
    ),
    "problem.too_long": Text(
        "太长",
        "too long",
    ),
    "problem.value_too_long": Text(
        "有单元格超过 {max} 个字符",
        "value longer than {max} characters",
    ),
    "problem.extra_cells": Text(
        "这一行有 {cells} 个单元格，而表头只有 {width} 列", "row has {cells} cells but the header has {width}"
    ),
    "problem.unterminated_quote": Text(
        "引号没有闭合，文件可能不完整", "unterminated quoted field at the end of the file (file truncated?)"
    ),
    "problem.bad_quote": Text(
        "引号用法不对：右引号后面必须是分隔符或换行",
        "malformed quoting: a closing quote must be followed by the delimiter or a line end",
    ),
    "problem.malformed_csv": Text(
        "不是有效的 CSV 记录",
        "malformed CSV record",
    ),
    "problem.invalid_json": Text(
        "不是有效的 JSON",
        "invalid JSON",
    ),
    "problem.not_json_object": Text(
        "这一行不是 JSON 对象",
        "line is not a JSON object",
    ),
    "problem.duplicate_key": Text(
        "字段 {field} 出现了不止一次",
        "more than one key for {field}",
    ),
}

_ROWS = {
    "row.unreadable": Text(
        "这一行无法读取：{problem}",
        "row cannot be read: {problem}",
    ),
    "duplicate.id_number": Text(
        "{column}与第 {first_row} 行重复",
        "{column}: same as row {first_row}",
    ),
    "duplicate.auth_code": Text(
        "{column}与第 {first_row} 行重复{case}", "{column}: same as row {first_row}{case}"
    ),
    "duplicate.already_uploaded": Text(
        "已于 {date} 在文件 {file} 中上传（作业 {job}），本次不再发送，不重复收费",
        "already uploaded in {file} on {date} (job {job}); not sent again (docs/operations.md#re-drop)",
    ),
    "duplicate.audit": Text(
        "与第 {first_row} 行是同一条核验",
        "same audit as row {first_row}",
    ),
    "duplicate.audit_exists": Text(
        "该车老板和车辆的核验已存在，状态：{status}",
        "an audit for this owner and vehicle is already {status}",
    ),
    "record_id.value": Text(
        "{column}必须是整数（核验记录 id）",
        "{column}: the record id must be the whole number `verifyfeed audits` shows",
    ),
    "record_id.not_correctable": Text(
        "{column} {record_id} 无法更正：{why}",
        "{column} {record_id}: {why}",
    ),
}

_FILES = {
    "file.empty": Text(
        "文件是空的",
        "file is empty",
    ),
    "file.folder": Text(
        "这是文件夹占位对象，不是文件",
        "the key is a folder placeholder, not a file",
    ),
    "file.too_large": Text(
        "文件有 {size} 字节，超过上限 {max} 字节：请拆分成较小的文件",
        "file is {size} bytes, more than MAX_FILE_BYTES ({max}): split it into smaller files",
    ),
    "file.too_many_rows": Text(
        "超过 {max} 行：请拆分成较小的文件", "more than {setting} ({max}) rows: split it into smaller files"
    ),
    "file.identical": Text(
        "与 {date} 处理过的文件 {file}（作业 {job}）内容完全相同：本次未发送任何数据；"
        "如确需重新发送，请放到 {prefix} 下",
        "identical to {file} split on {date} (job {job}): nothing sent; to send it again drop it under "
        "{prefix} (docs/operations.md#re-drop)",
    ),
    "file.xls": Text(
        "这是旧版 Excel（.xls）或加了密码的工作簿：请另存为 .xlsx 或 CSV",
        "old binary Excel (.xls) or password-protected workbook: convert to .xlsx or CSV",
    ),
    "file.xlsx_not_zip": Text(
        "不是有效的 .xlsx 文件（不是 zip 格式）", "not a valid .xlsx file (it is not a zip archive)"
    ),
    "file.zip_damaged": Text(
        "不是有效的 .xlsx 文件（zip 压缩包已损坏）", "not a valid .xlsx file (the zip archive is damaged)"
    ),
    "file.zip_bomb_ratio": Text(
        "压缩炸弹：其中有成员解压后膨胀超过 {ratio}:1",
        "decompression bomb: a member expands more than {ratio}:1",
    ),
    "file.zip_bomb_size": Text(
        "压缩炸弹：解压后超过 {mb} MB", "decompression bomb: more than {mb} MB uncompressed"
    ),
    "file.xlsx_unreadable": Text(
        "无法读取的 .xlsx 工作簿",
        "not a readable .xlsx workbook",
    ),
    "file.sheet_missing": Text(
        "工作簿中没有名为 {sheet} 的工作表", "the workbook has no sheet named {sheet}"
    ),
    "file.no_worksheet": Text(
        "工作簿中没有工作表",
        "the workbook has no worksheet",
    ),
    "file.worksheet_damaged": Text(
        "工作表在第 {row} 行之后已损坏", "the worksheet is damaged after row {row}"
    ),
    "file.password": Text(
        "工作簿设置了打开密码，无法读取：请在 Excel 或 WPS 中取消密码"
        "（文件 → 信息 → 保护工作簿 → 用密码进行加密，清空密码）后重新保存并上传",
        "the workbook is protected with a password: remove the password (in Excel: File → Info → "
        "Protect Workbook → Encrypt with Password, clear it), save and upload it again",
    ),
    "file.workbook_unreadable": Text(
        "无法读取的 {format} 工作簿：请用 Excel 或 WPS 打开后另存为 .xlsx 再上传",
        "not a readable {format} workbook: open it in Excel or WPS, save it as .xlsx and upload it again",
    ),
    "file.sheet_damaged": Text(
        "工作表 {sheet} 已损坏，无法读取", "the worksheet {sheet} is damaged and cannot be read"
    ),
    "file.sheet_too_large": Text(
        "工作表 {sheet} 的数据区域有 {rows} 行 × {columns} 列，超过 {max} 个单元格："
        "请删除多余的行和列，或拆分文件",
        "the worksheet {sheet} spans {rows} rows × {columns} columns, more than {max} cells: delete the "
        "unused rows and columns, or split the file",
    ),
    "file.ods_row_limit": Text(
        "工作表 {sheet} 达到了 .ods 文件 {max} 行的读取上限，之后的行无法读取：请另存为 CSV，或拆分文件",
        "the worksheet {sheet} reaches the {max}-row limit of .ods reading: rows past it cannot be read; "
        "save it as CSV, or split the file",
    ),
    "file.sheets_ambiguous": Text(
        "有多个工作表都是名单（{sheets}）：每个文件只放一个名单，或把其余工作表隐藏或删除",
        "more than one worksheet holds a list ({sheets}): keep one list per file, or hide or delete "
        "the other sheets",
    ),
    "file.jsonl_first_line": Text(
        "第一行不是 JSON 对象（{problem}）", "the first line is not a JSON object ({problem})"
    ),
    "file.no_json_object": Text(
        "文件中没有 JSON 对象",
        "file has no JSON object",
    ),
    # what a file is when it is not a spreadsheet (ingest/formats.py): said before anything is read
    "file.pdf": Text(
        "这是 PDF 文档，不是表格：请上传 .xlsx 或 CSV 文件",
        "a PDF document, not a spreadsheet: upload the .xlsx or CSV file",
    ),
    "file.image": Text(
        "这是 {format} 图片，不是表格：请上传 .xlsx 或 CSV 文件",
        "a {format} image, not a spreadsheet: upload the .xlsx or CSV file",
    ),
    "file.archive": Text(
        "这是 {format} 压缩包，不是 .xlsx 工作簿：请解压后上传其中的 .xlsx 或 CSV 文件",
        "a {format} archive, not an .xlsx workbook: unpack it and upload the .xlsx or CSV file inside",
    ),
    "file.office_document": Text(
        "这是 {format} 文档，不是表格：请上传 .xlsx 或 CSV 文件",
        "a {format} document, not a spreadsheet: upload the .xlsx or CSV file",
    ),
    "file.ods": Text(
        "这是 OpenDocument 表格（.ods）：请另存为 .xlsx 或 CSV",
        "an OpenDocument spreadsheet (.ods): save it as .xlsx or CSV",
    ),
    "file.html": Text(
        "这是网页（HTML），可能是 Excel 另存的网页格式：请另存为 .xlsx 或 CSV",
        "a web page (HTML), perhaps saved by Excel as a web page: save it as .xlsx or CSV",
    ),
    "file.xml": Text(
        "这是 XML 文件（例如 Excel 2003 XML 表格）：请另存为 .xlsx 或 CSV",
        "an XML file (such as an Excel 2003 XML spreadsheet): save it as .xlsx or CSV",
    ),
    "file.binary": Text(
        "这是二进制文件，不是表格也不是文本：请上传 .xlsx 或 CSV 文件",
        "binary data, neither a spreadsheet nor text: upload the .xlsx or CSV file",
    ),
    # the header row
    "header.no_row": Text(
        "文件没有表头行",
        "file has no header row",
    ),
    "header.invalid_csv": Text(
        "表头行不是有效的 CSV",
        "the header row is not valid CSV",
    ),
    "header.encoding": Text(
        "表头不是有效的 {encoding} 文本",
        "the header is not valid {encoding} text",
    ),
    "header.unreadable": Text(
        "表头行含有 NUL 字符或太长", "the header row contains NUL characters or is too long"
    ),
    "header.missing_columns": Text(
        "缺少必需的列：{columns}{where}", "missing required column(s): {columns}{where}"
    ),
    "header.duplicate_columns": Text(
        "以下字段各有不止一列：{columns}。每个字段只保留一列，或给其余的列改名{where}",
        "more than one column for: {columns} — keep one of each, or rename the others{where}",
    ),
    "header.not_found": Text(
        "找不到表头（没有列名的文本或数据）：前 {rows} 行都没有{kind}文件的列名（{columns}）",
        "no header row (text or data without column names): none of the first {rows} row(s) names the "
        "columns of a {kind} file ({columns})",
    ),
    "header.not_found_either": Text(
        "找不到表头（没有列名的文本或数据）：前 {rows} 行既没有失联修复文件的列名（{repair_columns}），"
        "也没有车老板核验文件的列名（{audit_columns}）",
        "no header row (text or data without column names): none of the first {rows} row(s) names the "
        "columns of a lost-repair file "
        "({repair_columns}) or of a carrier-audit file ({audit_columns})",
    ),
    "header.other_kind": Text(
        "表头是{found}文件的列名，而不是{kind}文件的（{kind}文件有 {columns} 这几列）",
        "the header is that of a {found} file, not of a {kind} file (which has the columns {columns})",
    ),
    "header.kind_unknown": Text(
        "无法从表头判断是失联修复文件还是车老板核验文件：失联修复文件有 {repair_columns} 这几列，"
        "车老板核验文件有 {audit_columns} 这几列",
        "cannot tell lost-repair from carrier-audit by the header: a lost-repair file has the columns "
        "{repair_columns}, a carrier-audit file {audit_columns}",
    ),
}

# the report's one-line summary (logic/reports.py ``headline``)
_HEADLINES = {
    "headline.lost_repair": Text(
        "已发送 {sent} 行{already}，{to_fix} 行需修改", "{sent} sent{already}, {to_fix} to fix"
    ),
    "headline.carrier_audit": Text(
        "已提交核验 {sent} 行，{to_fix} 行需修改", "{sent} submitted for audit, {to_fix} to fix"
    ),
    "headline.dry_run": Text(
        "试运行，未发送任何数据：将发送 {sent} 行{already}，{to_fix} 行需修改",
        "dry run, nothing sent: {sent} would be sent{already}, {to_fix} to fix",
    ),
    "headline.already_uploaded": Text(
        "，{rows} 行已{where}上传过（不重复收费）",
        ", {rows} already uploaded{where} (not charged again)",
    ),
    "headline.where": Text("于 {places}", " {places}"),
    "headline.uploaded_in": Text("{date} 在 {file} 中", "on {date} in {file}"),
    "headline.more_files": Text("另外 {files} 个文件中", "in {files} more file(s)"),
    "headline.refused": Text(
        "文件未被处理，未发送任何数据：{reason}",
        "file refused, nothing sent: {reason}",
    ),
}

# the rejected-rows workbook's last line when a sheet is full (logic/reports.py ``XLSX_MAX_ROWS``)
_REPORTS = {
    "report.more_rows": Text(
        "还有 {rows} 行未列在此表中，见 {file}",
        "{rows} more row(s) not listed in this sheet: see {file}",
    ),
    # the header facts' notes (``RowSource.notes``): a closing total row the reader skipped; ``label``
    # is what its label cell says, a summary label the reader recognised (合计, 共 8 人), never a value
    "note.title_rows": Text(
        "表头（第 {header} 行）上方的第 {rows} 行为标题，已跳过",
        "row(s) {rows} above the header (row {header}) skipped as a title",
    ),
    "note.summary_row": Text(
        "第 {row} 行（{label}）为汇总行，已跳过",
        "row {row} ({label}) skipped as a summary row",
    ),
    "note.summary_rows_more": Text(
        "另有 {rows} 个汇总行已跳过",
        "{rows} more summary row(s) skipped",
    ),
}

CATALOGUE: MappingProxyType[str, Text] = MappingProxyType(
    {**_FIELD, **_PARTS, **_PROBLEMS, **_ROWS, **_FILES, **_HEADLINES, **_REPORTS}
)


@dataclass(frozen=True, slots=True)
class Reason:
    """A catalogued reason with its parameters; ``zh`` and ``en`` are its two texts. A parameter is
    language-neutral — an ``int``, a ``str`` (a row number, a file name, a column label as the
    customer's file has it), a tuple of them (joined with ``、`` or ``, ``) — or another ``Reason``,
    rendered in the same language (``detail``, ``problem``, ``status`` ...). An unknown code is
    refused at once (``ValueError``)."""

    code: str
    params: tuple[tuple[str, Param], ...] = ()

    def __post_init__(self) -> None:
        if self.code not in CATALOGUE:
            raise ValueError(f"no catalogue entry for reason code {self.code!r} (verifyfeed/reasons.py)")

    @property
    def zh(self) -> str:
        return _render(self, "zh")

    @property
    def en(self) -> str:
        return _render(self, "en")

    def bilingual(self) -> str:
        """English, then Chinese: one line for a note both kinds of reader see."""
        return f"{self.en} / {self.zh}"

    def text(self, language: Language) -> str:
        return _render(self, language)

    def param(self, name: str) -> Param | None:
        return dict(self.params).get(name)

    def relabelled(self, labels: Mapping[str, str]) -> Reason:
        """The same reason with every column it names (a ``column`` or ``*_column`` parameter
        holding a field name) named by its label in ``labels`` (field → label)."""
        params = tuple(
            (name, labels.get(value, value) if isinstance(value, str) and _names_column(name) else value)
            for name, value in self.params
        )
        return Reason(self.code, params)

    def with_params(self, **params: Param) -> Reason:
        """The same reason with ``params`` added or replaced."""
        return Reason(self.code, tuple({**dict(self.params), **params}.items()))

    def as_dict(self) -> dict[str, str]:
        """What a report carries: ``{"code", "zh", "en"}``."""
        return {"code": self.code, "zh": self.zh, "en": self.en}

    def __str__(self) -> str:
        return self.en


def _names_column(param: str) -> bool:
    return param == "column" or param.endswith("_column")


def reason(code: str, **params: Param) -> Reason:
    return Reason(code, tuple(params.items()))


def _value(value: Param, language: Language) -> str:
    if isinstance(value, Reason):
        return _render(value, language)
    if isinstance(value, tuple):
        return _JOIN[language].join(_value(v, language) for v in value)
    return str(value)


@lru_cache(maxsize=8192)  # a file's rejected rows repeat few distinct reasons
def _render(reason: Reason, language: Language) -> str:
    text = CATALOGUE[reason.code]
    template = text.zh if language == "zh" else text.en
    return template.format_map({name: _value(value, language) for name, value in reason.params})
