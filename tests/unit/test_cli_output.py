"""The CLI's plain-text pieces and its argument parsing (no AWS)."""

from __future__ import annotations

import io

import pytest

from verifyfeed_cli.app import build_parser, main
from verifyfeed_cli.output import (
    Col,
    ProgressBar,
    Screen,
    confirm,
    cut_middle,
    line,
    table,
    when,
    width,
)


def test_table_aligns_chinese_text_by_display_width() -> None:
    text = table(("FILE", "N"), [("名单.csv", 1), ("list.csv", 22)])
    lines = text.splitlines()
    assert lines == ["FILE      N", "名单.csv  1", "list.csv  22"]


WIDE_ROW = (
    "lost-repair/客户名单客户名单客户名单2026年12月.xlsx",
    "lost-repair",
    "completed_with_errors",
    "3000/2995/5",
)
COLUMNS = (Col("FILE", cut=12), Col("KIND", drop=2), Col("STATUS"), Col("ROWS", drop=1))


def test_a_table_fits_80_columns_by_cutting_then_dropping_counted_in_terminal_cells() -> None:
    rows = [WIDE_ROW, ("名单.csv", "carrier-audit", "completed", "1/1/0")]
    lines = table(COLUMNS, rows, Screen(80)).splitlines()
    assert max(width(line) for line in lines) <= 80, lines
    assert lines[0].split() == ["FILE", "KIND", "STATUS", "ROWS"]  # all fit once FILE is cut
    assert "…" in lines[1] and "completed_with_errors" in lines[1] and "3000/2995/5" in lines[1]
    narrow = table(COLUMNS, rows, Screen(60)).splitlines()
    assert max(width(line) for line in narrow[:-1]) <= 60, narrow
    assert narrow[0].split() == ["FILE", "STATUS", "ROWS"]  # KIND dropped first (drop=2)
    assert narrow[-1] == "(not shown, to fit 60 columns: KIND; --wide)"


def test_a_cut_cjk_cell_keeps_the_columns_aligned() -> None:
    lines = table(COLUMNS, [WIDE_ROW, ("名单.csv", "x", "ok", "1")], Screen(40)).splitlines()
    status_at = [
        width(line[: line.index(s)]) for line, s in zip(lines[:3], ("STATUS", "completed", "ok"), strict=True)
    ]
    assert len(set(status_at)) == 1, lines  # the STATUS column starts in the same terminal column
    assert all(width(line) <= 40 for line in lines[:-1])


def test_wide_shows_every_column_whole() -> None:
    text = table(COLUMNS, [WIDE_ROW], Screen(80, wide=True))
    assert WIDE_ROW[0] in text and "lost-repair  completed_with_errors" in text and "not shown" not in text


def test_the_screen_is_the_terminal_or_columns_or_80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert Screen.of(io.StringIO()) == Screen(80)
    monkeypatch.setenv("COLUMNS", "132")
    assert Screen.of(io.StringIO(), wide=True) == Screen(132, True)


def test_times_are_shown_in_china_time() -> None:
    assert when("2026-11-30T16:30:00.000+00:00") == "2026-12-01 00:30"
    assert when("") == "-"


def test_progress_bar_draws_on_a_terminal_and_ends_on_the_total() -> None:
    stream = io.StringIO()
    bar = ProgressBar(4, "moving", stream, enabled=True)
    bar.advance()
    bar.advance(3)
    bar.close()
    out = stream.getvalue()
    assert "moving" in out and out.rstrip("\x1b[?25h").endswith("4/4 0:00:00\n")
    assert "\r" in out  # redrawn in place, not one line per step


def test_progress_bar_is_silent_off_a_terminal_and_tolerates_a_low_estimate() -> None:
    stream = io.StringIO()  # not a tty
    bar = ProgressBar(1, "moving", stream)
    bar.advance(3)
    bar.close()
    assert stream.getvalue() == "" and bar.total == 3


@pytest.mark.parametrize(
    ("answer", "yes"), [("y\n", True), ("YES\n", True), ("n\n", False), ("\n", False), ("", False)]
)
def test_confirm_only_yes_is_yes(answer: str, yes: bool) -> None:
    err = io.StringIO()
    assert confirm("Proceed?", io.StringIO(answer), err) is yes
    assert err.getvalue().startswith("Proceed? [y/N] ")


def test_common_options_go_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--json", "--stack", "s1", "status", "x.csv"])
    after = parser.parse_args(["status", "x.csv", "--json", "--stack", "s1"])
    for args in (before, after):
        assert (args.json, args.stack, args.command, args.ref) == (True, "s1", "status", "x.csv")
    bare = parser.parse_args(["deferred"])
    assert not hasattr(bare, "json") and not hasattr(bare, "stack")


def test_help_and_usage_errors_return_their_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "exit codes:" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["redrive", "--limit", "-1"]) == 2
    assert "positive whole number" in capsys.readouterr().err


def test_columns_line_of_status() -> None:
    from verifyfeed_cli.views import columns_text as _columns_text

    assert _columns_text(None) == "not known: no header facts stored for this job"
    no_header = {"header_row": None, "ignored_columns": [], "notes": []}
    assert _columns_text(no_header) == "not known: the file was rejected before its header was read"
    facts = {"header_row": 2, "ignored_columns": ["序号", "备注"], "notes": []}
    assert _columns_text(facts) == "header in row 2; ignored: 序号, 备注"
    assert _columns_text({**facts, "ignored_columns": []}) == "header in row 2; every column used"


def test_a_file_name_is_cut_in_the_middle_keeping_its_end() -> None:
    name = "客户失联修复名单（第三批，已核对）2026年12月6日.csv"
    cut = cut_middle(name, 20)
    assert width(cut) <= 20 and cut.startswith("客户") and cut.endswith("6日.csv") and "…" in cut
    assert cut_middle("list.csv", 20) == "list.csv"


def test_a_long_line_puts_its_command_on_the_next_line_whole() -> None:
    command = ".venv/bin/verifyfeed --local report c7f71204a0033762e9b612c5"
    uri = "s3://bucket/reports/lost-repair/客户失联修复名单.csv/c7f71204a0033762e9b612c5.json"
    assert line("Report:   ", "s3://b/r.json", "verifyfeed report X", Screen(80)) == [
        "Report:   s3://b/r.json  (verifyfeed report X)"
    ]
    first, second = line("Report:   ", uri, command, Screen(80))
    assert first == f"Report:   {uri}" and second == " " * 10 + command
    assert len(line("Report:   ", uri, command, Screen(80, wide=True))) == 1
