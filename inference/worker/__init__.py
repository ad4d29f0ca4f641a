"""The worker process: consumes jobs through :mod:`inference.api.transport` and runs the predictor."""
