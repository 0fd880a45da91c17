"""The synthetic demo set: posts from templates, painted images, and the best a text-only model can do."""
