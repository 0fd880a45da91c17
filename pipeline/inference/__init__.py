"""Using a trained tagger: its checkpoint folder, the visual features checked against it, tagging posts, and
scoring the tags (evaluate's metrics). Training imports this package; nothing here imports training."""
