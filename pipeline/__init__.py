"""dghc's library: data, detection, vision features, the DGHC model, training, prediction, reports, experiments
over seeds, and the demo set."""

__version__ = "0.1.0"
