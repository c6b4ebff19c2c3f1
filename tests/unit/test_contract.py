"""Unit tests of the data contract (etl/contract.py): reading a file safely, the cell rules, the fast path that
must type a valid file as the string path does, and messages that quote only an excerpt of the file."""

from __future__ import annotations

import pandas as pd
import pytest

from etl import contract
from etl.dataset import EXPECTED_COLUMNS, FEATURES, ID, TARGET
from tests.support.scoring import batch
from utils.errors import EXCERPT_CHARS, DataValidationError, excerpt


def raw_frame(rows: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=EXPECTED_COLUMNS, dtype=str)


def test_normalise_types_cells_and_reports_each_bad_one_with_its_line():
    raw = raw_frame([["1", "5", "1", "1", "1", "2", "NA", "3", "1", "1", "benign"],
                     ["2", "x", "1", "1", "1", "2", "?", "3", "1", "11", "Malignant"],
                     ["3", "5", "1", "1", "1", "2", "", "3", "1", "1", "4"]])
    clean, violations = contract.normalise(raw)
    assert clean[TARGET].tolist()[:2] == [0, 1] and clean["Bare.nuclei"].isna().all()
    found = {(v["line"], v["column"]): v["problem"] for v in violations}
    assert found[(3, "Cl.thickness")] == "not a whole number"
    assert found[(3, "Mitoses")].startswith("fails in_range")
    assert found[(4, TARGET)].startswith("unknown label")
    assert len(violations) == 3


def test_uci_labels_are_used_only_when_the_file_uses_nothing_else():
    labels, violations = contract.parse_labels(pd.Series(["2", "4", "4"]))
    assert labels.tolist() == [0, 1, 1] and not violations
    labels, violations = contract.parse_labels(pd.Series(["0", "1", "4"]))
    assert [v["line"] for v in violations] == [4]


def test_check_columns_names_missing_unexpected_and_repeated_in_any_order(tmp_path):
    with pytest.raises(DataValidationError, match="repeated column.*'Id'.*missing column.*Class"):
        contract.check_columns([ID, *FEATURES, ID], tmp_path / "f.csv")
    contract.check_columns([TARGET, *FEATURES, ID], tmp_path / "f.csv")


def test_check_columns_lists_at_most_ten_names_each_cut_short(tmp_path):
    header = [*EXPECTED_COLUMNS, *(f"{i:02d}" + "x" * 100 for i in range(12))]
    with pytest.raises(DataValidationError) as error:
        contract.check_columns(header, tmp_path / "f.csv")
    listed = str(error.value).split("unexpected column(s) ")[1]
    assert listed.startswith(f"'00{'x' * (EXCERPT_CHARS - 2)}…', '01") and "'09" in listed and "'10" not in listed
    assert listed.split(".")[0].endswith("…' and 2 more")


def test_reading_drops_a_bom_and_padding_and_puts_columns_in_order(tmp_path):
    path = tmp_path / "f.csv"
    names = [TARGET, *FEATURES, ID]
    path.write_text("\ufeff" + ",".join(f" {name} " for name in names) + "\n" + ",".join(["1"] * 10 + ["7"]) + "\n")
    raw = contract.raw_cells(contract.read_checked(path))
    assert raw.columns.tolist() == EXPECTED_COLUMNS and raw[ID].tolist() == ["7"]


def test_reading_ends_lines_at_cr_lf_or_crlf(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"\r".join([",".join(EXPECTED_COLUMNS).encode(), b",".join([b"1"] * 11), b",".join([b"2"] * 11)]))
    raw = contract.raw_cells(contract.read_checked(path))
    assert raw[ID].tolist() == ["1", "2"] and raw.index.tolist() == [0, 1]


def test_reading_names_the_line_the_csv_module_cannot_read(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text(",".join(EXPECTED_COLUMNS) + "\n" + ",".join(["1"] * 11) + "\n" + "1," + "9" * 200_000 + "\n")
    with pytest.raises(DataValidationError, match=r"not a well-formed CSV at line 3: field larger than field limit"):
        contract.read_typed(path)


@pytest.mark.parametrize("bom", [b"", "\ufeff".encode()])
def test_reading_names_a_byte_that_is_not_utf8_however_deep_in_the_file(tmp_path, bom):
    path = tmp_path / "f.csv"
    good = bom + (",".join(EXPECTED_COLUMNS) + "\n" + (",".join(["1"] * 11) + "\n") * 1000).encode()
    path.write_bytes(good + b"1,\xe9,1,1,1,1,1,1,1,1,1\n")
    with pytest.raises(DataValidationError, match=f"byte {len(good) + 2} is not UTF-8"):
        contract.read_typed(path)


@pytest.mark.parametrize(("text", "shown"), [
    ("five", "five"), ("", ""), ("x" * EXCERPT_CHARS, "x" * EXCERPT_CHARS),
    ("x" * (EXCERPT_CHARS + 1), "x" * EXCERPT_CHARS + "…"), ("a\tb\x1b[2J", "a\\tb\\x1b[2J"),
    ("\x00" * EXCERPT_CHARS, "\\x00" * (EXCERPT_CHARS // 4) + "…"),
])
def test_excerpt_is_short_printable_and_marks_a_cut(text, shown):
    assert excerpt(text) == shown


def test_a_violation_keeps_only_an_excerpt_of_the_cell():
    _, violations = contract.normalise(raw_frame([["1", "y" * 500, *["1"] * 8, "0"]]))
    assert [v["value"] for v in violations] == ["y" * EXCERPT_CHARS + "…"]
    assert contract.describe(violations[0]).endswith(f"'{'y' * EXCERPT_CHARS}…' not a whole number")


@pytest.mark.parametrize("with_class", [False, True])
def test_the_fast_path_types_a_valid_file_as_the_string_path_does(tmp_path, with_class):
    frame = batch(300, 2, with_class=with_class).astype(str)
    frame.loc[7, "Bare.nuclei"] = " NA "  # read by the string path only: the result must be the same
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    optional = (TARGET,)

    def cell_by_cell() -> tuple[pd.DataFrame, list]:
        return contract.normalise(contract.raw_cells(contract.read_checked(path, optional)))

    slow, violations = cell_by_cell()
    assert violations == []
    assert contract.read_valid_numbers(contract.read_checked(path, optional)) is None  # not a number
    pd.testing.assert_frame_equal(contract.read_typed(path, optional)[0], slow)
    frame.loc[7, "Bare.nuclei"] = "?"
    frame.to_csv(path, index=False)
    fast = contract.read_valid_numbers(contract.read_checked(path, optional))
    pd.testing.assert_frame_equal(fast, cell_by_cell()[0])
