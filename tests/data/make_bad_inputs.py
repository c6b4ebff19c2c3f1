"""Regenerate the bad-input corpus in tests/data/bad_inputs/ from the bundled data set.

Each file breaks the data contract in one way, is not the data at all (a fake service-account key), or uses an
alternative encoding that the pipeline accepts; tests/test_bad_inputs.py says what each must produce. Run:
`python tests/data/make_bad_inputs.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "bad_inputs"
BUNDLED = (ROOT / "data" / "BreastCancer.csv").read_bytes()
LINES = BUNDLED.decode("utf-8").splitlines()
HEADER, ROWS = LINES[0], LINES[1:81]  # 80 rows: enough of both classes to split and cross-validate
FAKE_KEY_BODY = "".join(f"NOT+A+REAL+KEY+{i:03d}/" for i in range(60))  # must never appear in any output


def cells(line: str) -> list[str]:
    return line.split(",")


def join(rows: list[list[str]]) -> str:
    return "\n".join(",".join(row) for row in rows) + "\n"


def with_cell(row_index: int, column: int, value: str) -> str:
    rows = [cells(HEADER)] + [cells(line) for line in ROWS]
    rows[row_index + 1][column] = value
    return join(rows)


def map_column(column: int, mapping) -> str:
    rows = [cells(HEADER)] + [cells(line)[:column] + [mapping(cells(line)[column])] + cells(line)[column + 1:]
                              for line in ROWS]
    return join(rows)


def reordered(line: str) -> str:
    """The bundled columns in another order: Class first, then the features backwards, then Id."""
    row = cells(line)
    return ",".join([row[10], *reversed(row[1:10]), row[0]])


def nuclei_last(line: str) -> str:
    """A line with its Bare.nuclei column (the one that may be empty) moved to the end."""
    row = cells(line)
    return ",".join([*row[:6], *row[7:], row[6]])


PEM_LABEL = "PRIVATE KEY"  # the armour is put together at run time: no file in the repository looks like a key


def fake_pem(body: str) -> str:
    """`body` in a private key's PEM armour, as a service-account key file holds it."""
    return f"-----BEGIN {PEM_LABEL}-----\n{body}\n-----END {PEM_LABEL}-----\n"


def service_account_key() -> str:
    """A fake Google service-account key, written on one line as `json.dumps` does."""
    return json.dumps({
        "type": "service_account", "project_id": "fake-project", "private_key_id": "0123456789abcdef" * 2,
        "private_key": fake_pem(FAKE_KEY_BODY),
        "client_email": "pipeline@fake-project.iam.gserviceaccount.com", "client_id": "123456789012345678901",
        "token_uri": "https://oauth2.googleapis.com/token"}) + "\n"


def made_at_run_time() -> dict[str, bytes]:
    """Inputs the tests write into a temporary folder instead of the repository: a file that looks like a private
    key would trip every secret scanner that reads the repository."""
    return {"service_account_key.json": service_account_key().encode("utf-8")}


def corpus() -> dict[str, bytes]:
    header = cells(HEADER)
    body = "\n".join(ROWS) + "\n"
    benign_only = [line for line in LINES[1:] if line.endswith(",0")][:60]
    wide_header = header + [f'"extra{i}"' for i in range(500)]
    wide_rows = [cells(line) + ["1"] * 500 for line in ROWS[:5]]
    short_row = [nuclei_last(line) for line in [HEADER, *ROWS]]
    short_row[11] = short_row[11].rsplit(",", 1)[0]  # line 12 lost its last cell: Bare.nuclei
    blank_lines = list(ROWS)
    blank_lines[18] = blank_lines[18].replace(',"1",', ',"0",', 1)  # file line 21 once a blank line 11 is added
    long_name = '"Note_' + "abcdefghij" * 1000 + '"'  # a header that is one 10 kB line
    files = {
        "empty.csv": "",
        "header_only.csv": HEADER + "\n",
        "missing_column.csv": join([cells(line)[:9] + cells(line)[10:] for line in [HEADER, *ROWS]]),
        "extra_column.csv": join([cells(line) + ['"note"' if i else '"Comment"']
                                  for i, line in enumerate([HEADER, *ROWS])]),
        "renamed_column.csv": HEADER.replace('"Cell.size"', '"Cell_size"') + "\n" + body,
        "text_in_numeric.csv": with_cell(2, 1, '"five"'),
        "score_zero.csv": with_cell(1, 2, '"0"'),
        "score_eleven.csv": with_cell(3, 8, '"11"'),
        "fractional_score.csv": with_cell(4, 3, '"2.5"'),
        "unknown_label.csv": with_cell(5, 10, "maybe"),
        "missing_label.csv": with_cell(6, 10, ""),
        "mixed_label_codings.csv": with_cell(7, 10, "4"),
        "negative_id.csv": with_cell(0, 0, '"-5"'),
        "na_in_required_feature.csv": with_cell(8, 4, "NA"),
        "one_class_only.csv": HEADER + "\n" + "\n".join(benign_only) + "\n",
        "all_rows_na.csv": join([header] + [[cells(line)[0]] + ["NA"] * 9 + [cells(line)[10]] for line in ROWS]),
        "duplicated_header.csv": HEADER + "\n" + "\n".join(ROWS[:40] + [HEADER] + ROWS[40:]) + "\n",
        "semicolon_separated.csv": "\n".join(line.replace(",", ";") for line in [HEADER, *ROWS]) + "\n",
        "very_wide.csv": join([wide_header, *wide_rows]),
        "trailing_comma.csv": HEADER + "\n" + "".join(line + ",\n" for line in ROWS),
        "short_row.csv": "\n".join(short_row) + "\n",
        "blank_lines.csv": "\n".join([HEADER, *blank_lines[:9], "", *blank_lines[9:]]) + "\n\n",
        "ragged_row.csv": HEADER + "\n" + "\n".join(ROWS[:10] + [ROWS[10] + ',"1"'] + ROWS[11:]) + "\n",
        "html_error_page.csv": "<!DOCTYPE html>\n<html><body><h1>502 Bad Gateway</h1></body></html>\n",
        "truncated.csv": (HEADER + "\n" + body)[:-30],
        "long_header.csv": join([[*header, long_name]] + [[*cells(line), "1"] for line in ROWS]),
        "escape_codes_in_header.csv": HEADER.replace('"Class"', '"\x1b[2J\x1b[HClass"') + "\n" + body,
        "long_text_in_cell.csv": with_cell(3, 1, '"' + "pain in the left breast since March; " * 8 + '"'),
        "lowercase_header.csv": HEADER.lower() + "\n" + body,
        # accepted by documented rules
        "uci_codes.csv": map_column(10, lambda v: {"0": "2", "1": "4"}[v]).replace("NA", "?"),
        "text_labels.csv": map_column(10, lambda v: {"0": " Benign", "1": "MALIGNANT "}[v]),
        "exact_duplicates.csv": HEADER + "\n" + body + "\n".join(ROWS[:5]) + "\n",
        "crlf_line_endings.csv": "\r\n".join([HEADER, *ROWS]) + "\r\n",
        "padded_header.csv": "\n".join([",".join(f"  {name} " for name in HEADER.replace('"', "").split(",")),
                                         *LINES[1:]]) + "\n",
        "reordered_columns.csv": "\n".join(reordered(line) for line in LINES) + "\n",
    }
    encoded = {name: text.encode("utf-8") for name, text in files.items()}
    encoded["utf8_bom.csv"] = "\ufeff".encode() + BUNDLED
    encoded["non_utf8.csv"] = with_cell(3, 0, '"1017122é"').encode("latin-1")
    return encoded


if __name__ == "__main__":
    OUT.mkdir(exist_ok=True)
    for name, content in corpus().items():
        (OUT / name).write_bytes(content)
    print(f"wrote {len(corpus())} files to {OUT}")
