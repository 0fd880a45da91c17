"""Running stages beyond one process: the Ray Data engine of ``dghc detect|extract|predict --engine ray``.

Only this package imports Ray (an optional extra). detect and extract write sharded HDF5 stores
(``dghc.pipeline.artifacts.shards``) that every reader of the local engine's files opens as one; predict writes Parquet
shards plus ``_index.json``, which Parquet readers open as one table once the index is there.
"""
