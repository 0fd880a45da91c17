"""Object detection on the posts' images: the ``detect`` stage.

Two sources are merged: a generic detector (any ultralytics YOLO or RT-DETR weights, or a torchvision Faster
R-CNN, the paper's) and a text-prompted grounding detector (ultralytics YOLOE or YOLO-World) prompted with phrases
taken from the post. The top m regions of each image are written to an HDF5 file (see ``store`` for the layout).

Modules: ``config`` (the stage's parameters), ``phrases`` (prompt phrases of a post), ``merge`` (class-agnostic
NMS and top m), ``detectors`` (ultralytics wrappers and weight resolution), ``torchvision_detector`` (torchvision
detection models), ``sources`` (which sources run, from their specs), ``store`` (HDF5 writer and reader), ``run``
(the stage with resume), ``draw`` (boxes drawn on an image for a person to look at: ``--show`` and the report).
"""
