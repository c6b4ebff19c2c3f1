"""The Airflow Assets that connect the training DAG and the scoring DAG, named once (stdlib only: the DAG files
import this at parse time).

A new champion (the training DAG's publishing task declares CHAMPION as an outlet) and a new batch of samples
each trigger the scoring DAG, whose schedule is `champion | incoming`. The incoming Asset's watcher (run by the
triggerer, etl/incoming_watch.py) posts its event when a batch is handed off into INCOMING_DIR; scripts may post
one through the REST API (`make announce-batch`). The URIs use an `x-` scheme: Airflow leaves those as written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHAMPION_NAME = "breast_cancer_champion"
CHAMPION_URI = "x-breast-cancer://results/champion"
INCOMING_NAME = "breast_cancer_incoming_batches"
INCOMING_URI = "x-breast-cancer://incoming"
INCOMING_WATCHER = "breast_cancer_incoming_folder"
SCORING_DAG_ID = "breast_cancer_scoring"


def champion() -> Any:
    """The champion Asset (airflow.sdk is imported here, when a DAG file asks)."""
    from airflow.sdk import Asset

    return Asset(name=CHAMPION_NAME, uri=CHAMPION_URI)


def incoming(folder: Path) -> Any:
    """The incoming-batches Asset, watched in `folder` (INCOMING_DIR) by the triggerer."""
    from airflow.sdk import Asset, AssetWatcher

    from etl.incoming_watch import IncomingBatchTrigger

    watcher = AssetWatcher(name=INCOMING_WATCHER, trigger=IncomingBatchTrigger(folder=str(folder)))
    return Asset(name=INCOMING_NAME, uri=INCOMING_URI, watchers=[watcher])
