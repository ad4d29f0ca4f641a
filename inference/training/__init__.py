"""Training, evaluation, calibration and weight averaging of the served network."""
