"""Face detectors. Each module in this package is one detector and is found by itself: its
module name is the detector's name (``MOODRING_FACE_DETECTOR``, the CLIs' ``--detector``) and
``Detector`` its class (a :class:`~inference.serve.faces.FaceDetector`, built without
arguments; one with networks may have ``to(device)``). A new detector is one new module here;
:func:`inference.serve.faces.build_detector` finds it by name.
``benchmarks/face_detectors.py`` measured them; the numbers and the choice are in
``inference/MODEL_CARD.md``.
"""
