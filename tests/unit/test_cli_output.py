"""The CLI's plain-text pieces and its argument parsing (no AWS)."""

from __future__ import annotations

import io

import pytest

from verifyfeed_cli.app import build_parser, main
from verifyfeed_cli.output import ProgressBar, confirm, shorten, table, when


def test_table_aligns_chinese_text_by_display_width() -> None:
    text = table(("FILE", "N"), [("名单.csv", 1), ("list.csv", 22)])
    lines = text.splitlines()
    assert lines == ["FILE      N", "名单.csv  1", "list.csv  22"]


def test_times_are_shown_in_china_time() -> None:
    assert when("2026-11-30T16:30:00.000+00:00") == "2026-12-01 00:30"
    assert when("") == "-"


def test_shorten_keeps_one_line() -> None:
    assert shorten("a\nb   c") == "a b c"
    assert shorten("x" * 100, 10) == "x" * 9 + "…"


def test_progress_bar_redraws_in_place_when_enabled() -> None:
    stream = io.StringIO()
    bar = ProgressBar(4, "moving", stream, enabled=True)
    bar.advance()
    bar.advance(3)
    bar.close()
    out = stream.getvalue()
    assert out.startswith("\rmoving [" + "#" * 7 + "." * 23 + "] 1/4")
    assert out.endswith("\rmoving [" + "#" * 30 + "] 4/4\n")


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
    from verifyfeed_cli.commands import _columns_text

    assert _columns_text(None) == "not known: no header facts stored for this job"
    no_header = {"header_row": None, "ignored_columns": [], "notes": []}
    assert _columns_text(no_header) == "not known: the file was rejected before its header was read"
    facts = {"header_row": 2, "ignored_columns": ["序号", "备注"], "notes": []}
    assert _columns_text(facts) == "header in row 2; ignored: 序号, 备注"
    assert _columns_text({**facts, "ignored_columns": []}) == "header in row 2; every column used"
