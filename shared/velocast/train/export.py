"""ONNX export with an explicit opset, and the parity check that gates publication."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from velocast import tasks
from velocast.features import N_FEATURES, ONNX_INPUT_NAME

# Pinned so a model exported today loads in the functions' onnxruntime for years.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = ONNX_INPUT_NAME
PARITY_TOLERANCE = 1e-4


def to_onnx(estimator, task: str) -> bytes:
    options = {id(estimator): {"zipmap": False}} if task == "classify" else None
    model = convert_sklearn(
        estimator,
        initial_types=[(INPUT_NAME, FloatTensorType([None, N_FEATURES]))],
        target_opset=TARGET_OPSET,
        options=options,
    )
    return model.SerializeToString()


def onnx_output(onnx_bytes: bytes, matrix: np.ndarray, task: str) -> np.ndarray:
    """The model's output on the scale parity is judged: log1p(count) for a regressor,
    P(busy) for a classifier. The functions read outputs the same way."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {INPUT_NAME: matrix.astype(np.float32)})
    return tasks.get(task).model_output(outputs)


def sklearn_output(estimator, matrix: np.ndarray, task: str) -> np.ndarray:
    if task == "classify":
        return estimator.predict_proba(matrix)[:, 1]
    return estimator.predict(matrix)


def parity_gap(onnx_bytes: bytes, estimator, matrix: np.ndarray, task: str) -> float:
    """Largest absolute difference between ONNX and scikit-learn outputs."""
    expected = sklearn_output(estimator, matrix, task)
    actual = onnx_output(onnx_bytes, matrix, task)
    return float(np.max(np.abs(expected - actual))) if len(expected) else 0.0
