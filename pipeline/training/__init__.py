"""Training the tagger: its parameters, the optimizer and schedule, the trainer and its resumable state.
Using a trained model (checkpoints, tagging, evaluation) is ``dghc.pipeline.inference``."""
