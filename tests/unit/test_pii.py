from verifyfeed.pii import mask_id, mask_name, mask_phone, spreadsheet_safe


def test_masks_keep_only_a_few_characters() -> None:
    assert mask_id("11010519491231002X") == "110*************2X"
    assert mask_phone("13812345678") == "138******78"
    assert mask_name("张三丰") == "张**"
    assert mask_id(None) == ""
    assert mask_id("12") == "**"


def test_spreadsheet_safe_neutralises_formulas() -> None:
    for cell in ("=1+1", "+cmd", "-2", "@SUM(A1)", "\tx"):
        assert spreadsheet_safe(cell).startswith("'")
    assert spreadsheet_safe("plain") == "plain"
    assert spreadsheet_safe("") == ""
