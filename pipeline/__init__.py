"""dghc's library: data, detection, vision features, the DGHC model, training and metrics."""

__version__ = "0.1.0"
