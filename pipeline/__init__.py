"""dghc's library: data, detection, vision features, the DGHC model, training, prediction, reports, experiments
over seeds, and the demo set."""

from .. import __version__

__all__ = ["__version__"]
