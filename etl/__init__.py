"""The pipeline's steps: load, preprocess, train, evaluate, upload. Each is `etl.<step>.run(settings)` and
`python -m etl.<step>`."""
