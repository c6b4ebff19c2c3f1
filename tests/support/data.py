"""The data the tests run on: the bundled CSV and its checksum, the folder of test inputs, a fake Drive key, and
the run folder as the command line opens it."""

from __future__ import annotations

import json
from pathlib import Path

from etl.run_folder import RunFolder
from tests.data.make_bad_inputs import fake_pem
from utils.config import BUNDLED_DATA, PROJECT_ROOT, VARIABLES, Settings

BUNDLED_CSV = BUNDLED_DATA
BUNDLED_SHA256 = "7efcfc593f86f3d898df92a8fec32e64ce84195647bd3a8a2d48c68c005767f4"
TEST_DATA = PROJECT_ROOT / "tests" / "data"  # the bad-input corpus: make_settings allows file:// URLs there too
BAD_INPUTS = TEST_DATA / "bad_inputs"
SETTING_VARIABLES = [*VARIABLES.values(), "RUN_ID"]  # RUN_ID: the command line's run id
FAKE_KEY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC-FAKE-PRIVATE-KEY-FOR-TESTS-0123456789"
FAKE_KEY_FILE = json.dumps({"type": "service_account", "client_email": "pipeline@example.iam.gserviceaccount.com",
                            "private_key": fake_pem(FAKE_KEY)}) + "\n"


def open_run(settings: Settings, run_id: str = "test") -> RunFolder:
    """The run `run_id` in the settings' runs folder, as the command line opens it."""
    return RunFolder.open(settings.runs_dir, run_id)


def fake_key(folder: Path) -> Path:
    """A Drive key file with a recognisable fake private key in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "drive_sa.json"
    path.write_text(FAKE_KEY_FILE, encoding="utf-8")
    return path


def few_malignant_csv(path: Path, malignant_ids: int = 4, benign_ids: int = 60) -> Path:
    """The bundled data cut to its first `benign_ids` benign and `malignant_ids` malignant Ids (each Id with all
    its rows): too few malignant cases for linear_svm's internal 3-fold calibration with CV_FOLDS=2, while the
    other candidates fit them."""
    header, *lines = BUNDLED_CSV.read_text(encoding="utf-8").splitlines()
    wanted: dict[str, list[str]] = {"0": [], "1": []}
    for line in lines:
        row_id, label = line.split(",")[0], line.rsplit(",", 1)[1]
        ids = wanted[label]
        if row_id not in ids and len(ids) < (malignant_ids if label == "1" else benign_ids):
            ids.append(row_id)
    kept = {row_id for ids in wanted.values() for row_id in ids}
    path.write_text("\n".join([header, *(line for line in lines if line.split(",")[0] in kept)]) + "\n",
                    encoding="utf-8")
    return path
