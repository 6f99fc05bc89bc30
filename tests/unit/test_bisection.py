"""The pure parts of the bisection (docs/decisions.md#state-0): numbering, halves, bodies, counts."""

from __future__ import annotations

import itertools
import json

import pytest

from verifyfeed.logic.bisection import body_records, generation, halves, record_ref, worst_case_halves
from verifyfeed.logic.reports import record_outcomes
from verifyfeed.models.ids import TREE_BASE, TREE_SPAN, tree_position, tree_seq
from verifyfeed.models.records import Batch, BatchStatus
from verifyfeed.store.jobs import batch_sk


def test_tree_seqs_are_above_the_files_and_name_their_root_and_node() -> None:
    assert tree_seq(7, 1) == 7 and tree_position(7) == (7, 1)
    seen = set()
    for root in (1, 2, 999, 1_000_000):
        for node in range(2, TREE_SPAN):
            seq = tree_seq(root, node)
            assert seq > TREE_BASE and tree_position(seq) == (root, node)
            seen.add(seq)
    assert len(seen) == 4 * (TREE_SPAN - 2)  # no two nodes of any trees share a seq
    with pytest.raises(ValueError):
        tree_seq(1, TREE_SPAN)


def test_one_trees_sort_keys_are_a_contiguous_range() -> None:
    """``JobStore.tree`` reads a tree with one BETWEEN on the sort key."""
    keys = [batch_sk(tree_seq(42, node)) for node in range(2, TREE_SPAN)]
    assert keys == sorted(keys)
    others = [batch_sk(s) for s in (41, 42, 43, 999_999, tree_seq(41, 4095), tree_seq(43, 2))]
    assert not [k for k in others if keys[0] <= k <= keys[-1]]


@pytest.mark.parametrize("count", [2, 3, 999, 1000])
def test_halves_cover_the_batch_in_order_the_first_the_larger(count: int) -> None:
    records = [str(i).encode() for i in range(count)]
    first, second = halves(records)
    assert first + second == records and len(first) - len(second) in (0, 1) and second


def test_a_body_is_split_into_records_serialised_as_the_splitter_does() -> None:
    splitter_body = '[{"name":"张三","idcode":"%s","usedPhone":"","authCode":"A1"}]' % ("a" * 64)
    spaced = json.dumps(json.loads(splitter_body), ensure_ascii=False, indent=1).encode()
    assert body_records(spaced) == [splitter_body.encode()[1:-1]]


def test_a_refused_record_is_named_by_its_auth_code_masked_when_it_looks_like_a_number() -> None:
    assert record_ref(b'{"authCode":"K0000613"}') == "K0000613"
    assert "13812345678" not in record_ref(b'{"authCode":"13812345678"}')


def halves_sent(refused: set[int], first: int, last: int) -> int:
    """Halves a bisection of rows ``first..last`` sends (the first half the larger), by simulation."""
    if last - first < 1 or not refused & set(range(first, last + 1)):
        return 0
    middle = first + (last - first + 2) // 2
    return 2 + halves_sent(refused, first, middle - 1) + halves_sent(refused, middle, last)


@pytest.mark.parametrize("records", range(1, 13))
def test_the_worst_case_is_the_most_halves_of_any_placement_of_the_refused_rows(records: int) -> None:
    for refused in range(records + 1):
        most = max(
            halves_sent(set(rows), 0, records - 1) for rows in itertools.combinations(range(records), refused)
        )
        assert worst_case_halves(refused, records) == most, (refused, records)
    assert worst_case_halves(records + 5, records) == worst_case_halves(records, records)


def test_the_calls_k_refused_rows_of_1000_take_at_most(capsys: pytest.CaptureFixture[str]) -> None:
    """The figures docs/decisions.md#state-0 quotes: 1 call for the batch, 2 for every part split."""
    calls = {k: 1 + worst_case_halves(k, 1000) for k in range(1, 9)}
    assert calls == {1: 21, 2: 39, 3: 55, 4: 71, 5: 85, 6: 99, 7: 113, 8: 127}
    assert 1 + worst_case_halves(1000, 1000) == 1 + 2 * 999  # every part split: what "systematic" saves
    with capsys.disabled():
        print(f"\nworst-case upload calls for k refused rows of 1,000: {calls}")


def test_depth_of_a_node() -> None:
    assert [generation(n) for n in (1, 2, 3, 4, 7, 8, 2047)] == [0, 1, 1, 2, 2, 3, 10]


def test_record_outcomes_count_each_row_once_in_the_batch_that_holds_it_last() -> None:
    def batch(seq: int, status: BatchStatus, count: int) -> Batch:
        return Batch(job_id="j", seq=seq, batch_id=f"j#{seq}", status=status, record_count=count)

    batches = [
        batch(1, BatchStatus.BISECTED, 10),
        batch(tree_seq(1, 2), BatchStatus.SUCCEEDED, 5),
        batch(tree_seq(1, 3), BatchStatus.BISECTED, 5),
        batch(tree_seq(1, 6), BatchStatus.FAILED, 3),
        batch(tree_seq(1, 7), BatchStatus.REFUSED, 2),
        batch(2, BatchStatus.UNKNOWN, 4),
        batch(3, BatchStatus.DEFERRED, 1),
    ]
    assert record_outcomes(batches) == {"uploaded": 5, "refused": 3, "held": 4, "deferred": 1, "pending": 2}
