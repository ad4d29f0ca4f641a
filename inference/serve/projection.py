"""A fixed projection of the network's pooled features to a few numbers per face, shipped with
the model, so a deployment's adapter can learn from more than the seven probabilities.

x = (f − mean) · Cᵀ / scale, with f the 2048 pooled features (the input of the last layer), C the
first ``dims`` principal directions of FER2013 Training's pooled features and ``scale`` their
standard deviations there (so each number is about unit-sized). It is fitted once, on FER2013
Training only, by ``moodring adapt projection``, and travels with the weights (its sha256 is in the
manifest). Only these numbers of a face are ever kept (for contributors, with their labels): never
the photo, the crop or the full feature vector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.api.errors import ModelError
from inference.api.manifest import ModelManifest, default_model_dir, sha256_file

log = logging.getLogger(__name__)

DIMS = 128


@dataclass(frozen=True, slots=True)
class Projection:
    mean: np.ndarray  # (F,)
    components: np.ndarray  # (dims, F)
    scale: np.ndarray  # (dims,)
    sha256: str = ""

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Projected numbers (N, dims) for pooled features (N, F)."""
        x = (np.asarray(features, dtype=np.float32) - self.mean) @ self.components.T
        out: np.ndarray = (x / self.scale).astype(np.float32)
        return out

    def save(self, path: Path) -> str:
        """Write it as safetensors; returns the file's sha256 for the manifest."""
        from safetensors.numpy import save_file

        tensors = {"mean": self.mean, "components": self.components, "scale": self.scale}
        save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}, str(path))
        return sha256_file(path)


def fit_projection(features: np.ndarray, dims: int = DIMS) -> Projection:
    """The first ``dims`` principal directions of ``features`` (N, F), with their scales.

    Signs are fixed (each direction's largest entry positive) so a re-run gives the same file.
    """
    f = np.asarray(features, dtype=np.float64)
    mean = f.mean(axis=0)
    _, s, vt = np.linalg.svd(f - mean, full_matrices=False)
    comp = vt[:dims]
    signs = np.sign(comp[np.arange(len(comp)), np.abs(comp).argmax(axis=1)])
    comp = comp * signs[:, None]
    scale = np.maximum(s[:dims] / np.sqrt(max(len(f) - 1, 1)), 1e-6)
    return Projection(mean.astype(np.float32), comp.astype(np.float32), scale.astype(np.float32))


def load_projection(model_dir: Path | None, manifest: ModelManifest) -> Projection | None:
    """The model's projection (``model_dir``: default, the shipped one), or None when its manifest
    names none.

    Raises:
        ModelError: the file is missing or its sha256 doesn't match the manifest.
    """
    if not manifest.projection_file:
        return None
    from safetensors.numpy import load_file

    path = (model_dir or default_model_dir()) / manifest.projection_file
    if not path.is_file():
        raise ModelError(f"projection file {path} is missing")
    digest = sha256_file(path)
    if digest != manifest.projection_sha256:
        raise ModelError(f"sha256 of {path} does not match its manifest")
    t = load_file(str(path))
    return Projection(t["mean"], t["components"], t["scale"], digest)
