"""A plain ONNX graph of the collapsed network: Sub (the input offset, when there is one), Gemm,
Tanh/Relu, Mul, Add, Clip (or Max/Min)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bpd.errors import BpdError
from bpd.io import atomic_write
from export.collapse import CollapsedNet

OPSET = 13
IR_VERSION = 7  # readable by onnxruntime >= 1.6 and most C generators


def build_onnx(net: CollapsedNet, metadata: dict[str, object]) -> onnx.ModelProto:
    inits, nodes = [], []
    h = "obs"
    if net.in_offset is not None:
        inits.append(numpy_helper.from_array(np.asarray(net.in_offset, np.float32), "in_offset"))
        nodes.append(helper.make_node("Sub", ["obs", "in_offset"], ["centred"], name="centre"))
        h = "centred"
    n = len(net.weights)
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        inits += [numpy_helper.from_array(np.asarray(w, np.float32), f"W{i}"),
                  numpy_helper.from_array(np.asarray(b, np.float32), f"B{i}")]
        y = f"z{i}"
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"B{i}"], [y], transB=1, name=f"gemm{i}"))
        if i < n - 1:
            op = "Tanh" if net.activation == "tanh" else "Relu"
            nodes.append(helper.make_node(op, [y], [f"h{i}"], name=f"act{i}"))
            h = f"h{i}"
        else:
            h = y
    if net.output == "tanh":
        inits += [numpy_helper.from_array(net.out_scale, "out_scale"),
                  numpy_helper.from_array(net.out_offset, "out_offset")]
        nodes += [helper.make_node("Tanh", [h], ["squashed"], name="squash"),
                  helper.make_node("Mul", ["squashed", "out_scale"], ["scaled"], name="scale"),
                  helper.make_node("Add", ["scaled", "out_offset"], ["action"], name="offset")]
    elif np.all(net.action_low == net.action_low[0]) and np.all(net.action_high == net.action_high[0]):
        inits += [numpy_helper.from_array(np.array(net.action_low[0], np.float32), "low"),
                  numpy_helper.from_array(np.array(net.action_high[0], np.float32), "high")]
        nodes.append(helper.make_node("Clip", [h, "low", "high"], ["action"], name="clip"))
    else:
        inits += [numpy_helper.from_array(net.action_low, "low"), numpy_helper.from_array(net.action_high, "high")]
        nodes += [helper.make_node("Max", [h, "low"], ["above_low"], name="clip_low"),
                  helper.make_node("Min", ["above_low", "high"], ["action"], name="clip_high")]
    graph = helper.make_graph(
        nodes, "bpd_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", net.obs_dim])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["batch", net.act_dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bpd")
    model.ir_version = IR_VERSION
    for k, v in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=str(v)))
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    data = model.SerializeToString()
    atomic_write(path, lambda f: f.write(data))


def onnx_weights(path: str | Path) -> list[np.ndarray]:
    """The weight matrices (outputs x inputs, as Gemm with transB takes them) of a policy build_onnx wrote."""
    try:
        inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
    except Exception as e:
        raise BpdError(f"{path}: not a loadable ONNX model ({e.__class__.__name__})") from None
    n = sum(1 for k in inits if k.startswith("W") and k[1:].isdigit())
    return [inits[f"W{i}"] for i in range(n)]


class OnnxPolicy:
    """An exported ONNX policy run with onnxruntime."""

    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise BpdError(f"{path}: no such file")
        try:
            self.model = onnx.load(str(path))
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BpdError(f"{path}: not a loadable ONNX model ({e.__class__.__name__})") from None
        self.meta = {p.key: p.value for p in self.model.metadata_props}
        self.obs_dim = self.session.get_inputs()[0].shape[1]

    def act(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, np.float32)
        single = x.ndim == 1
        y = self.session.run(["action"], {"obs": x.reshape(-1, self.obs_dim)})[0]
        return y[0] if single else y


def reference_evaluator_run(model: onnx.ModelProto, obs: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    # run() returns a list unless intermediate=True; its annotation does not say so
    return ReferenceEvaluator(model).run(["action"], {"obs": np.asarray(obs, np.float32)})[0]  # type: ignore[index]
