"""Running stages beyond one process: the Ray Data engine of ``dghc detect|extract --engine ray``.

Only this package imports Ray (an optional extra); its outputs are sharded stores (``pipeline.artifacts.shards``)
that every reader of the local engine's files opens as one.
"""
