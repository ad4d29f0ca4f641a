"""Emotion engine: face ROI, ResNet50 classifier, Grad-CAM and the Redis worker.

Importing this package (or :mod:`inference.api.contract`) never imports torch; the
heavy modules are imported explicitly by the processes that need them.
"""
