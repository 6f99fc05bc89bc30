"""Types of the C extension built from layers/core/native/fastsplit.c (see there)."""

SHA_NI: bool
# Py_LIMITED_API of the build (0x030B0000: CPython 3.11's stable ABI, loaded by 3.11 and later); 0 if none
LIMITED_API: int

class SeenKeys:
    """The splitter's in-file dedupe table: keys seen, each with the row that first saw it."""

    def __init__(self, fold_case: bool = False, hmac_key: bytes | None = None) -> None: ...
    @property
    def fold_case(self) -> bool: ...
    @property
    def keyed(self) -> bool: ...
    def first(self, key: bytes, /) -> int: ...
    def mark(self, key: bytes, row: int, /) -> None: ...
    def key(self, digest: bytes, /) -> bytes: ...
    def mark_many(self, keys: bytes, row: int, /) -> None: ...
    def export(self, last_rows: list[int], below: int, /) -> tuple[bytes, list[int]]: ...
    def __len__(self) -> int: ...

def take_plain(
    block: list[list[str]],
    start: int,
    columns: tuple[int, int, int, int],
    numbers: list[int],
    ids: SeenKeys,
    codes: SeenKeys,
    records: list[bytes],
    limit: int,
    /,
) -> int: ...
def sha256(data: bytes, portable: bool = False, /) -> bytes: ...
def take_lines(
    lines: list[str],
    start: int,
    first: int,
    delimiter: str,
    width: int,
    max_field_chars: int,
    columns: tuple[int, int, int, int],
    ids: SeenKeys,
    codes: SeenKeys,
    records: list[bytes],
    limit: int,
    /,
) -> int: ...
