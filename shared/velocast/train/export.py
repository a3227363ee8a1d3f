"""ONNX export with an explicit opset, and the parity check that gates publication."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, compose, helper, numpy_helper
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

from velocast.core import tasks
from velocast.core.features import N_FEATURES, ONNX_INPUT_NAME

# Pinned so a model exported today loads in the functions' onnxruntime for years.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = ONNX_INPUT_NAME
PARITY_TOLERANCE = 1e-4


@dataclass
class Subset:
    """An estimator that sees only the `kept` columns of the feature matrix and, with an
    `offset` column, learnt a regression target minus that column and adds it back.
    The export puts both inside the ONNX graph, so every model of a task takes the same
    matrix and gives the same kind of output."""

    estimator: object
    kept: tuple[int, ...]
    offset: int | None = None

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        out = self.estimator.predict(matrix[:, self.kept])
        return out if self.offset is None else out + matrix[:, self.offset]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(matrix[:, self.kept])


@dataclass
class Blend:
    """A classifier whose P(busy) is the mean of its members', each a Subset seeing its
    own columns; exported as one graph that reads the feature matrix once."""

    members: tuple[Subset, ...]

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_proba(matrix) for m in self.members], axis=0)


def _wrap(model, subset: Subset) -> None:
    """features -> Gather(kept) -> estimator [-> + features[:, offset]]."""
    graph = model.graph
    inner = graph.input[0].name
    graph.initializer.append(numpy_helper.from_array(np.array(subset.kept, dtype=np.int64),
                                                     name="kept_columns"))
    graph.node.insert(0, helper.make_node("Gather", [INPUT_NAME, "kept_columns"], [inner], axis=1))
    if subset.offset is not None:
        output = graph.output[0].name
        residual = f"{output}_residual"
        for node in graph.node:
            node.output[:] = [residual if o == output else o for o in node.output]
        graph.initializer.append(numpy_helper.from_array(np.array([subset.offset], dtype=np.int64),
                                                         name="offset_column"))
        graph.node.extend([
            helper.make_node("Gather", [INPUT_NAME, "offset_column"], ["offset"], axis=1),
            helper.make_node("Add", [residual, "offset"], [output]),
        ])
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                                     [None, N_FEATURES]))


def _blend_graph(members: list):
    """The members' graphs side by side on the one input, their probabilities averaged;
    the label is the likelier class, as a single classifier's is."""
    parts = [compose.add_prefix(m, f"m{i}_", rename_inputs=False) for i, m in enumerate(members)]
    probabilities = [f"m{i}_{m.graph.output[1].name}" for i, m in enumerate(members)]
    first = members[0].graph
    graph = helper.make_graph(
        [n for p in parts for n in p.graph.node] + [
            helper.make_node("Mean", probabilities, [first.output[1].name]),
            helper.make_node("ArgMax", [first.output[1].name], [first.output[0].name],
                             axis=1, keepdims=0)],
        "blend", [first.input[0]], list(first.output),
        initializer=[i for p in parts for i in p.graph.initializer])
    return helper.make_model(graph, opset_imports=members[0].opset_import,
                             ir_version=members[0].ir_version)


def to_onnx(estimator, task: str) -> bytes:
    return _model(estimator, task).SerializeToString()


def _model(estimator, task: str):
    if isinstance(estimator, Blend):
        return _blend_graph([_model(m, task) for m in estimator.members])
    subset = estimator if isinstance(estimator, Subset) else None
    if subset is not None:
        estimator = subset.estimator
    options = {id(estimator): {"zipmap": False}} if tasks.get(task).kind.classifier else None
    inputs = [("estimator_input", FloatTensorType([None, len(subset.kept)]))] if subset \
        else [(INPUT_NAME, FloatTensorType([None, N_FEATURES]))]
    model = convert_sklearn(
        estimator,
        initial_types=inputs,
        target_opset=TARGET_OPSET,
        options=options,
    )
    if subset is not None:
        _wrap(model, subset)
    return model


def onnx_output(onnx_bytes: bytes, matrix: np.ndarray, task: str) -> np.ndarray:
    """The model's output on the scale parity is judged: log1p(count) for a regressor,
    P(busy) for a classifier. The functions read outputs the same way."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {INPUT_NAME: matrix.astype(np.float32)})
    return tasks.get(task).model_output(outputs)


def sklearn_output(estimator, matrix: np.ndarray, task: str) -> np.ndarray:
    if tasks.get(task).kind.classifier:
        return estimator.predict_proba(matrix)[:, 1]
    return estimator.predict(matrix)


def parity_gap(onnx_bytes: bytes, estimator, matrix: np.ndarray, task: str) -> float:
    """Largest absolute difference between ONNX and scikit-learn outputs."""
    expected = sklearn_output(estimator, matrix, task)
    actual = onnx_output(onnx_bytes, matrix, task)
    return float(np.max(np.abs(expected - actual))) if len(expected) else 0.0
