"""Tagging new posts (``dghc predict``): JSONL in, entities with offsets, relevance and gates out.

- ``config``: the command's parameters.
- ``inputs``: reading and checking the input lines (``id``, ``text`` or ``tokens``, optional ``image``).
- ``visual``: detection and CLIP extraction in process, rebuilt from the settings a checkpoint records.
- ``run``: the whole command: parse, detect + encode the images, tag, write JSONL.
"""
