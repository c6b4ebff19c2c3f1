"""The pipeline's own exceptions: each message says what was wrong, where, and what was expected, and quotes
what it rejects only through `excerpt`."""

EXCERPT_CHARS = 24  # enough to recognise a cell or a column name, too little to carry a key or a token out


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` printable characters of `text` (others escaped as in Python), with `…` when cut."""
    shown = ""
    for char in text:
        piece = char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        if len(shown) + len(piece) > limit:
            return shown + "…"
        shown += piece
    return shown


class PipelineError(Exception):
    """A failure the user can act on; the CLI prints its message without a traceback."""

    transient: bool = False  # True: a retry may succeed (Airflow retries it); False: it fails at once


class ConfigError(PipelineError):
    """A setting is missing or has a value that cannot be used."""


class DataSourceError(PipelineError):
    """The data could not be obtained, or what was obtained is not the expected CSV."""


class DataValidationError(PipelineError):
    """The data does not match the schema; the validation report lists every violation."""


class ArtifactError(PipelineError):
    """An artifact a step needs is missing, or its checksum does not match."""


class UnsafeFileError(PipelineError):
    """A path that must be a regular file (or a folder) of the project's is a symlink, a FIFO, a device, a
    directory, or lies outside the folder it must be in: it is refused by what it is, without being read."""


class QualityGateError(PipelineError):
    """The model is below a quality threshold, so it must not be published."""


class DiskFullError(PipelineError, OSError):
    """A write failed because its file system is full (ENOSPC) or the disk quota is used up (EDQUOT): the message
    names the file, the folder and the file system's free and total space (`utils.files.no_space_note`). It is an
    OSError too, keeping the original `errno`, so code that handles OSError handles it as before. Not transient:
    the disk stays full until someone frees space."""

    def __init__(self, code: int, message: str, filename: str | None = None) -> None:
        super().__init__(code, message, filename)

    def __str__(self) -> str:
        return str(self.strerror)  # the message alone: no "[Errno 28]" prefix, the errno is named in it


class PublishError(PipelineError):
    """Publishing the run's artifacts failed."""

    transient = True  # Google Drive answers 5xx and rate-limits


class RunLockedError(PipelineError):
    """Another process is running a step of the same run; the message names the run and the holder."""

    transient = True  # the holder may finish; Airflow's retry then gets the run


class TrainingError(PipelineError):
    """A candidate model cannot be fitted on the training rows (too few cases of a class for it, say)."""
