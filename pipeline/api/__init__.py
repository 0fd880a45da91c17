"""The pipeline's stages as Python functions, one module each: ``detect``, ``extract``, ``train``, ``evaluate``,
``predict`` (``dghc.detect(...)`` etc. from the package's top).

Each function takes keyword arguments named as the stage's parameters (``dghc STAGE --help``, the stage's section
of params.yaml), with the same defaults and checks (the config modules declare them once), and returns what the
stage computed. It is also where the stage's engine is chosen, above both engines: ``engine="local"`` runs the stage
in this process (``detection.run``, ``features.extract``, ``prediction.run``), ``engine="ray"`` as a Ray Data
pipeline (``scale/``); neither engine imports the other. The command line (``stages/``) calls these functions.

    import dghc
    dghc.detect(["data/demo/train.txt"], out="cache/detections.h5")
    dghc.extract(["data/demo/train.txt"], detections="cache/detections.h5", out="cache/features.h5")
    dghc.train(train_file="data/demo/train.txt", dev_file="data/demo/valid.txt", features_file="cache/features.h5")

A module per stage, so that a stage's code (what DVC hashes as its dependencies) is its own. Heavy modules (torch,
ultralytics, Ray) load when a function runs, not on import.
"""
