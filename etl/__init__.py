"""The pipeline: its steps (etl/steps.py lists them in order; each is `etl.<step>.run(run, settings)`, run by
`python -m etl <step>`), the runner around them (etl/pipeline.py), and the scoring of new samples."""
