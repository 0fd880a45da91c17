"""Training the tagger and using it: batching, the optimizer, the trainer and its resumable state, visual features
checked against the checkpoint, inference, checkpoints, evaluation, metrics."""
