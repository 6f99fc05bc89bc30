"""The seed copies are the spec, and the examples read out of them are what the spec prints."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.contract.seeds import SEED_SHA256, SEEDS, carrier_audit_sections, lost_repair_examples

SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec"


def test_seeds_are_the_spec() -> None:
    """Byte for byte the customer's documents: compared with ../shared/spec where it is laid
    beside the checkout (as in CI), and with the digests recorded when they were copied."""
    for name, digest in SEED_SHA256.items():
        copy = (SEEDS / name).read_bytes()
        assert hashlib.sha256(copy).hexdigest() == digest, f"{name} was edited"
        if SPEC.is_dir():
            assert (SPEC / name).read_bytes() == copy, f"{name} differs from {SPEC / name}: copy it again"


def test_lost_repair_examples_as_printed() -> None:
    seed = lost_repair_examples()
    records = seed.request["param"]["toRepairDataArray"]
    assert [r["name"] for r in records] == ["小明", "小红"]
    assert [r["authCode"] for r in records] == ["authCode1", "authCode2"]
    assert records[1]["usedPhone"] == ""
    assert seed.success == {"data": {"state": "1", "desc": "成功"}}
    assert seed.failure == {"data": {"state": "0", "desc": "失败"}}


def test_carrier_audit_sections_as_printed() -> None:
    sections = carrier_audit_sections()
    assert set(sections) == {"/carrierAudit/add", "/carrierAudit/update", "/carrierAudit/get", "callback"}
    add, update = sections["/carrierAudit/add"], sections["/carrierAudit/update"]
    assert len(add.request_fields) == 13 and update.request_fields == ["id", *add.request_fields]
    assert sections["/carrierAudit/get"].request_fields == ["id"]
    assert add.mocks == [{"code": "00000", "data": 1, "message": "请求成功"}]
    assert update.mocks == [{"code": "00000", "data": True, "message": "请求成功"}]
    [get] = sections["/carrierAudit/get"].mocks
    assert get["data"] == {"id": 12, "status": 2, "remarks": "身份证格式不正确"}  # status a number here
    body, reply = sections["callback"].mocks
    assert body["serviceName"] == "auditCarrierAudit" and body["status"] == 2
    assert reply == {"code": "00000", "message": "请求成功"}
