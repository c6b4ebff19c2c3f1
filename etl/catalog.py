"""Every file of a run's folder, named once (what Kedro calls the data catalog); `etl/steps.py` says which step
consumes and produces each."""

RUN_INFO = "run.json"  # when the run started: names its published folders
RAW = "raw.csv"  # the CSV exactly as obtained
LOAD_INFO = "load.json"  # load's record: source, location, rows, sha256
VALIDATION_REPORT = "validation_report.json"  # every violation, or the data's profile
TRAIN = "train.csv"
TEST = "test.csv"
TRAINING_PROFILE = "training_profile.json"  # per feature, the count of each value over the training rows
TRAINING_IDS = "training_ids.json"  # the Ids of the training rows: left out when this model is a champion scored
PREPROCESS_INFO = "preprocess.json"  # preprocess's record: counts
# Each candidate model is trained in its own folder `candidates/<name>/` (etl/train.py), with its own lock.
CANDIDATES_DIR = "candidates"
CANDIDATE_MODEL = "model.joblib"  # the candidate's sklearn Pipeline (impute, scale, classify) fitted on train.csv
OUT_OF_FOLD = "out_of_fold.csv"  # Id, Class and the out-of-fold probability of malignant of every training row
OUT_OF_FOLD_PROBABILITY = "probability"  # out_of_fold.csv's column of that probability
TRAIN_INFO = "train.json"  # the candidate's record: its cross-validation scores, model sha256
CANDIDATE_FAILURE = "failure.json"  # why the candidate's training failed (instead of its record)
MODEL = "model.joblib"  # the model every prediction uses: the winner's pipeline at its operating threshold
REPEATED_OUT_OF_FOLD = "out_of_fold.csv"  # the winner's: Id, Class, the mean out-of-fold probability over CV_REPEATS
SELECT_INFO = "select.json"  # select's record: every candidate's scores, the winner, the threshold and why
METRICS = "metrics.json"
ROC_CURVE = "roc_curve.png"
PRECISION_RECALL_CURVE = "precision_recall_curve.png"
CONFUSION_MATRIX = "confusion_matrix.png"
CALIBRATION_CURVE = "calibration_curve.png"  # from the repeated out-of-fold probabilities, with 95% bands
DECISION_CURVE = "decision_curve.png"  # net benefit against treat-all and treat-none on the test rows
CHARTS = (ROC_CURVE, PRECISION_RECALL_CURVE, CONFUSION_MATRIX, CALIBRATION_CURVE, DECISION_CURVE)
REPORT = "report.md"
MODEL_CARD = "report.html"  # the clinical model card: one self-contained page, written by compare
EVALUATE_INFO = "evaluate.json"  # evaluate's record
COMPARISON = "comparison.json"  # challenger vs champion on this run's test rows, and the decision
COMPARISON_REPORT = "comparison.md"  # the same for people, with the history of runs before this one
COMPARE_INFO = "compare.json"  # compare's record
MANIFEST = "manifest.json"  # checksums, settings, versions: published with the run
UPLOAD_INFO = "upload.json"  # upload's record: where the run was published
CHAMPION = "champion.json"  # RESULTS_DIR's pointer to the published run that scores new samples
PREDICTIONS = "predictions.csv"  # a scored batch: Id, probability, label, the model's run id and sha256
SCORING_SUMMARY = "summary.json"  # a scored batch's counts, model and drift
PROMOTE_INFO = "promote.json"  # promote's record: promoted or not, and why
# What upload publishes of a run (with the manifest it writes): the model and the evidence behind it.
PUBLISHED = (MODEL, METRICS, *CHARTS, REPORT, VALIDATION_REPORT, TRAINING_PROFILE, TRAINING_IDS, COMPARISON,
             COMPARISON_REPORT, MODEL_CARD)
LOCK = ".lock"  # held by the process running a step of the run (or of a candidate, in its folder)

# What metrics.json holds (malignant = positive): the report and the manifest list every test metric; the headline
# ones are shown in summaries; the CV ones are each candidate's on the training rows (label metrics at 0.5), from
# which etl/select.py picks the winner (by SELECTION_METRIC); the pushed ones feed the dashboard.
TEST_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "balanced_accuracy", "roc_auc", "pr_auc",
                "brier_score")
HEADLINE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
CV_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc", "brier_score")
HEADLINE_INTERVALS = ("recall", "specificity", "roc_auc")  # their 95% bounds go into the history beside them
PUSHED_METRICS = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc")


def candidate_file(candidate: str, name: str) -> str:
    """The run-folder path of the candidate's file `name`: `candidates/<candidate>/<name>`."""
    return f"{CANDIDATES_DIR}/{candidate}/{name}"
