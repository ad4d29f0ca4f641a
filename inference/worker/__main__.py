"""``python -m inference.worker``: the worker's composition root."""

from inference.worker.service import worker_command

if __name__ == "__main__":
    worker_command(prog_name="python -m inference.worker")
