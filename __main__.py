"""``python -m dghc``: the same command line as ``dghc``."""
from .cli import main

main()
