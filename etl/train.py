"""The train step (once per candidate model): its sklearn Pipeline (etl/modelling.py: median imputation of the
column that may be missing, standard scaling, classifier) cross-validated on the training rows grouped by Id, then
fitted on all of them; saved in the candidate's folder with its out-of-fold probabilities (the first of the
winner's repeated cross-validation, in select) and its CV scores."""

from __future__ import annotations

import pandas as pd

from etl import catalog
from etl.dataset import ID, TARGET
from etl.modelling import fit, summarise
from etl.run_folder import RunFolder
from etl.step_result import StepResult
from utils.config import Settings
from utils.files import write_model_atomic, write_text_atomic
from utils.logger import get_logger

STEP = "train"
log = get_logger(STEP)


def run(run: RunFolder, settings: Settings, candidate: str) -> StepResult:
    """Cross-validate and fit `candidate` on train.csv; save its model and out-of-fold probabilities in its
    folder; its CV scores and the model's checksum go into its record."""
    train = pd.read_csv(run.file(catalog.TRAIN))
    pipeline, probabilities, fold_scores = fit(train, candidate, settings.cv_folds, settings.seed)
    digest = write_model_atomic(pipeline, run.file(catalog.candidate_file(candidate, catalog.CANDIDATE_MODEL)))
    out_of_fold = train[[ID, TARGET]].assign(**{catalog.OUT_OF_FOLD_PROBABILITY: probabilities})
    write_text_atomic(run.file(catalog.candidate_file(candidate, catalog.OUT_OF_FOLD)), out_of_fold.to_csv(index=False))
    cv = summarise(fold_scores)
    log.info("trained %s on %d rows; CV recall %.3f±%.3f, ROC-AUC %.3f±%.3f; model sha256 %s", candidate,
             len(train), cv["recall"]["mean"], cv["recall"]["std"], cv["roc_auc"]["mean"], cv["roc_auc"]["std"],
             digest)
    summary = {"candidate": candidate, "rows_train": len(train), "model_sha256": digest,
               "cv_roc_auc": cv["roc_auc"]["mean"]}
    return StepResult(record={**summary, "seed": settings.seed, "cv_folds": settings.cv_folds, "cv": cv,
                              "cv_folds_scores": fold_scores},
                      summary=summary)

