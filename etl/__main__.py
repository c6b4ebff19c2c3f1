"""`python -m etl <step> [--run-id ID] [--candidate NAME]`: one step of etl/steps.py from the command line, as
`make local-<step>` runs it; `python -m etl.pipeline` runs them all in one process."""

import sys

from etl.pipeline import cli_main

sys.exit(cli_main(sys.argv[1:]))
