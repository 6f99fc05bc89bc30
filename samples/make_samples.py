"""Writes the synthetic sample files the demo feeds in. Deterministic: same output on every run.

    PYTHONPATH=layers/core/python python samples/make_samples.py

- ``lost-repair/customers.csv``: mostly valid rows (ID numbers with correct GB 11643 check digits, some
  with a former mobile number) and a few rows each broken in one way the splitter must reject.
- ``carrier-audit/audits.csv``: valid audits of all three usages (one the sandbox will reject because an
  attachment is named ``reject...``) and rows each breaking one rule of the spec.

Every name, ID number and phone number here is made up.
"""

from __future__ import annotations

import csv
import hashlib
import random
from datetime import date, timedelta
from pathlib import Path

from verifyfeed.models.carrier_audit import AUDIT_FIELDS

HERE = Path(__file__).resolve().parent
SEED = 20261105

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红梅建国志文"

LOST_REPAIR_HEADER = ["姓名", "身份证号", "曾用手机号", "授权码"]
CARRIER_AUDIT_HEADER = list(AUDIT_FIELDS)  # the seed's request fields, as the model lists them


def check_digit(first17: str) -> str:
    return CHECK_CHARS[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def wrong_check_digit(first17: str) -> str:
    right = check_digit(first17)
    return next(c for c in "0123456789" if c != right)


class Synth:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
        self.used_ids: set[str] = set()

    def name(self) -> str:
        return self.rng.choice(SURNAMES) + "".join(self.rng.choices(GIVEN, k=self.rng.choice((1, 2))))

    def first17(self, region: str = "110105") -> str:
        while True:
            born = date(1970, 1, 1) + timedelta(
                days=self.rng.randrange((date(2000, 12, 31) - date(1970, 1, 1)).days)
            )
            body = f"{region}{born:%Y%m%d}{self.rng.randrange(1, 999):03d}"
            if body not in self.used_ids:
                self.used_ids.add(body)
                return body

    def id_number(self, region: str = "110105") -> str:
        body = self.first17(region)
        return body + check_digit(body)

    def id_number_ending_x(self) -> str:
        while True:
            body = self.first17()
            if check_digit(body) == "X":
                return body + "X"

    def mobile(self) -> str:
        return f"138{self.rng.randrange(0, 10**8):08d}"


def lost_repair_rows(s: Synth) -> list[list[str]]:
    rows: list[list[str]] = []
    for n in range(1, 31):
        phone = s.mobile() if n % 3 != 0 else ""
        rows.append([s.name(), s.id_number(), phone, f"HT2026{n:05d}"])
    rows[4][1] = s.id_number_ending_x().lower()  # a lower-case x check digit is still valid
    rows[9][0] = "阿依古丽·买买提"  # a minority name with the separator dot

    bad_check = s.first17()
    invalid = [
        [s.name(), bad_check + wrong_check_digit(bad_check), s.mobile(), "HT2026E0001"],
        [s.name(), "1.10105E+17", "", "HT2026E0002"],  # mangled by Excel
        [s.name(), s.id_number(), "010-62345678", "HT2026E0003"],  # a landline, not a mobile
        [s.name(), s.id_number(), "", "HT-2026-E0004"],  # "-" not allowed
        [s.name(), s.id_number(), "", "HT2026E0000000005"],  # 17 characters
        [("欧阳" + GIVEN * 2)[:31], s.id_number(), "", "HT2026E0006"],  # 31 characters
        ["", s.id_number(), s.mobile(), "HT2026E0007"],  # no name
        [s.name(), rows[2][1], "", "HT2026E0008"],  # the ID number of row 3
        [s.name(), s.id_number(), "", rows[5][3]],  # the authCode of row 6
        [s.name(), hashlib.sha256(s.id_number().encode()).hexdigest(), "", "HT2026E0010"],  # already hashed
    ]
    # interleave the broken rows with the good ones, as they would turn up in a real export
    for offset, row in enumerate(invalid):
        rows.insert(3 + offset * 4, row)
    return rows


def carrier_audit_rows(s: Synth) -> list[list[str]]:
    def row(n: int, usage: str, **fields: str) -> list[str]:
        values = {
            "usage": usage,
            "name": s.name(),
            "idCard": s.id_number("440305"),
            "phone": s.mobile(),
            "idCardFrontFilename": f"owner-{n:03d}-front.jpg",
            "idCardBackFilename": f"owner-{n:03d}-back.jpg",
        }
        if usage == "1":
            values.update(
                driverName=s.name(),
                driverIdCard=s.id_number("440305"),
                driverIdCardFrontFilename=f"driver-{n:03d}-front.jpg",
                driverIdCardBackFilename=f"driver-{n:03d}-back.jpg",
                attachmentFileUrls=f"hukouben-{n:03d}.jpg,jiehunzheng-{n:03d}.jpg",
            )
        else:
            values.update(drivingLicenseFilename=f"xingshizheng-{n:03d}.jpg")
            proof = "guakao-xieyi" if usage == "2" else "dengjizhengshu"
            values.update(attachmentFileUrls=f"{proof}-{n:03d}.pdf")
        values.update(fields)
        return [values.get(column, "") for column in CARRIER_AUDIT_HEADER]

    bad_check = s.first17("440305")
    return [
        row(1, "1"),
        row(2, "2", carLicensePlate="京A12345"),
        row(3, "3", carLicensePlate="粤BD12345"),  # a new-energy plate
        row(4, "3", carLicensePlate="沪C54321", attachmentFileUrls="reject-dengjizhengshu-004.pdf"),
        row(5, "4", carLicensePlate="京A23456"),  # no such usage
        row(6, "2", name="张San", carLicensePlate="京A34567"),  # Latin letters in the name
        row(7, "3", idCard=bad_check + wrong_check_digit(bad_check), carLicensePlate="京A45678"),
        row(8, "1", driverIdCard=""),  # usage 1 needs the driver's ID number
        row(9, "2"),  # usage 2 needs a plate
        row(
            10,
            "3",
            carLicensePlate="京A56789",
            attachmentFileUrls=",".join(f"proof-{i}.pdf" for i in range(1, 11)),
        ),
    ]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def main(out: Path = HERE) -> None:
    s = Synth(SEED)
    write_csv(out / "lost-repair" / "customers.csv", LOST_REPAIR_HEADER, lost_repair_rows(s))
    write_csv(out / "carrier-audit" / "audits.csv", CARRIER_AUDIT_HEADER, carrier_audit_rows(s))


if __name__ == "__main__":
    main()
