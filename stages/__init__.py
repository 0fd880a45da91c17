"""The command line's stages: one thin click command per module, which builds the stage's config from its options
and params file and calls the stage's function in ``dghc.pipeline.api`` (or the library).

``COMMANDS`` lists them for the ``dghc`` group (cli.py) and the docs' parameter tables (``param_tables``); each
is imported only when used, so ``dghc --help`` stays fast.
"""
from __future__ import annotations

# name -> "module:attribute" of a click command. Add a stage here to make it a subcommand of `dghc`.
COMMANDS: dict[str, str] = {
    "detect": "dghc.stages.detect:detect_command",
    "data": "dghc.stages.data:data_group",
    "demo-data": "dghc.stages.demo:demo_data_command",
    "extract": "dghc.stages.extract:extract_command",
    "train": "dghc.stages.train:train_command",
    "evaluate": "dghc.stages.evaluate:evaluate_command",
    "predict": "dghc.stages.predict:predict_command",
    "report": "dghc.stages.report:report_command",
    "experiments": "dghc.stages.experiments:experiments_group",
    "table": "dghc.stages.table:table_command",
    "compare": "dghc.stages.compare:compare_command",
    "models": "dghc.stages.models:models_group",
}
