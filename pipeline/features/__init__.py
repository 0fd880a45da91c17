"""CLIP vectors of images and their detected regions: the encoder, the extract stage and the feature store."""
