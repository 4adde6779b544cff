"""Models: manifests, safe weight loading, pre-processing with a recorded transform, prediction. No Qt."""

from viewer.inference.checkpoint import CheckpointError
from viewer.inference.manifest import InputSpec, ManifestError, ModelManifest, load_manifest
from viewer.inference.model import LoadedModel, Prediction, build_network, find_target_layer
from viewer.inference.preprocess import GridTransform, prepare_array, prepare_frame

__all__ = [
    "CheckpointError",
    "GridTransform",
    "InputSpec",
    "LoadedModel",
    "ManifestError",
    "ModelManifest",
    "Prediction",
    "build_network",
    "find_target_layer",
    "load_manifest",
    "prepare_array",
    "prepare_frame",
]
