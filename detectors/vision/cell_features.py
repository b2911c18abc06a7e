"""The per-cell features the model's last layer sees, exposed as extra outputs of whatever model is loaded.

A per-camera learned head (``detectors.vision.camera_heads``) corrects the shipped head's per-cell logits
from the frozen features under it. The model file is not changed: at load time its graph gains two outputs,

- ``cell_logits`` (N, C, G, G): the per-cell class logits, the input of the Sigmoid that gives ``grid``;
- ``cell_features`` (N, F, G, G): the inputs of the 1x1 convolutions that give those logits (for the shipped
  model the two 96-channel ReLU outputs of the fire and smoke heads, concatenated: F = 192),

found by walking upstream from ``grid`` through the shape-only nodes (Concat, Slice, …) to the Conv nodes. A
retrained model of the same form gets the same outputs; one of another form (no Sigmoid before ``grid``, no
Conv under it) gets none, and learning is off for it. The existing outputs are computed by the same nodes as
before: their values do not change (a contract test compares them bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FEATURES = "cell_features"
LOGITS = "cell_logits"
PASS_THROUGH = {"Concat", "Slice", "Reshape", "Identity", "Split", "Transpose", "Squeeze", "Unsqueeze"}


@dataclass(frozen=True)
class CellOutputs:
    """What ``with_cell_outputs`` added: the serialized model, and the feature count F (0: nothing added)."""

    model: bytes
    features: int


def with_cell_outputs(model: Any, grid_output: str = "grid") -> CellOutputs:
    """``model`` (an ``onnx.ModelProto``) with ``cell_logits`` and ``cell_features`` outputs added.

    >>> import onnx
    >>> from onnx import helper, TensorProto
    >>> x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4, 2, 2])
    >>> g = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 2, 2, 2])
    >>> w = onnx.numpy_helper.from_array(__import__("numpy").ones((2, 4, 1, 1), "float32"), "w")
    >>> nodes = [helper.make_node("Relu", ["image"], ["f"]), helper.make_node("Conv", ["f", "w"], ["z"]),
    ...          helper.make_node("Sigmoid", ["z"], ["grid"])]
    >>> m = helper.make_model(helper.make_graph(nodes, "t", [x], [g], [w]))
    >>> with_cell_outputs(m).features
    4
    """
    import onnx
    from onnx import TensorProto, helper, shape_inference

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    grid = producer.get(grid_output)
    if grid is None or grid.op_type != "Sigmoid":
        return CellOutputs(model.SerializeToString(), 0)
    logits = grid.input[0]
    convs: list[Any] = []
    todo, seen = [logits], set()
    while todo:  # depth first, inputs in order: the features keep the order of the classes' heads
        name = todo.pop(0)
        node = producer.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        if node.op_type == "Conv":
            convs.append(node)
        elif node.op_type in PASS_THROUGH:
            todo[:0] = [node.input[0]] if node.op_type != "Concat" else list(node.input)
    feature_names = list(dict.fromkeys(c.input[0] for c in convs))
    if not feature_names:
        return CellOutputs(model.SerializeToString(), 0)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inferred = shape_inference.infer_shapes(out)
    dims = {v.name: v.type.tensor_type.shape.dim for v in inferred.graph.value_info}
    total = 0
    for name in feature_names:
        d = dims.get(name)
        if d is None or len(d) != 4 or not d[1].HasField("dim_value"):
            return CellOutputs(model.SerializeToString(), 0)
        total += int(d[1].dim_value)
    g = out.graph
    if len(feature_names) == 1:
        g.node.append(helper.make_node("Identity", feature_names, [FEATURES], name="cell_features/identity"))
    else:
        g.node.append(helper.make_node("Concat", feature_names, [FEATURES], name="cell_features/concat", axis=1))
    g.node.append(helper.make_node("Identity", [logits], [LOGITS], name="cell_logits/identity"))
    g.output.append(helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, None))
    g.output.append(helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, None))
    return CellOutputs(out.SerializeToString(), total)
