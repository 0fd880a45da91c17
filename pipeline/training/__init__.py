"""Training the tagger and using it: batching, the trainer, inference, checkpoints, evaluation, metrics."""
