"""The Airflow Assets that connect the training DAG and the scoring DAG, named once (stdlib only: the DAG files
import this at parse time).

A new champion (the training DAG's publishing task declares CHAMPION as an outlet) and a new batch of samples
(announced through the REST API, `make announce-batch`) each trigger the scoring DAG, whose schedule is
`champion | incoming`. The URIs use an `x-` scheme: Airflow leaves those as written.
"""

from __future__ import annotations

from typing import Any

CHAMPION_NAME = "breast_cancer_champion"
CHAMPION_URI = "x-breast-cancer://results/champion"
INCOMING_NAME = "breast_cancer_incoming_batches"
INCOMING_URI = "x-breast-cancer://incoming"
SCORING_DAG_ID = "breast_cancer_scoring"


def champion() -> Any:
    """The champion Asset (airflow.sdk is imported here, when a DAG file asks)."""
    from airflow.sdk import Asset

    return Asset(name=CHAMPION_NAME, uri=CHAMPION_URI)


def incoming() -> Any:
    """The incoming-batches Asset."""
    from airflow.sdk import Asset

    return Asset(name=INCOMING_NAME, uri=INCOMING_URI)
