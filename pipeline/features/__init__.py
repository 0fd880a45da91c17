"""CLIP vectors of images and their detected regions: the ``extract`` stage.

Modules: ``config`` (the stage's parameters), ``clip_encoder`` (loading the vision tower, or the untrained
offline default), ``preprocess`` (CLIP pixels of an image and its crops), ``crops`` (the batches of crops, off the
main thread), ``fingerprint`` (what made a features file), ``extract`` (the stage with resume), ``store`` (the
HDF5 layout, its writer and ``FeatureStore``, the reader training uses).
"""
