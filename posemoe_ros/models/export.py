"""ONNX export of the lifting networks and an onnxruntime backend with the model's call signature."""
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

OPSET = 17


class _PoseOnly(nn.Module):
    """Exports only the pose output (aux tensors are training signals)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def export_onnx(model: nn.Module, path, batch: int = 1, opset: int = OPSET) -> Path:
    """Write model (eval mode) to ONNX with input "keypoints" (B,T,J,3), output "pose"; B is dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    was_training = model.training
    model.eval()
    x = torch.zeros(batch, cfg.num_frames, cfg.num_joints, getattr(cfg, "in_channels", 3))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python checks
            # The TorchScript exporter handles these graphs (SDPA, replicate pad) directly and
            # needs no extra dependencies, so dynamo=False.
            torch.onnx.export(_PoseOnly(model), (x,), str(path), opset_version=opset, dynamo=False,
                              input_names=["keypoints"], output_names=["pose"],
                              dynamic_axes={"keypoints": {0: "batch"}, "pose": {0: "batch"}})
    finally:
        model.train(was_training)
    return path


class OnnxLifter:
    """onnxruntime session called like the model: (B,T,J,3) float32 -> (B,T,J,3) float32."""

    def __init__(self, path, intra_op_threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.num_frames, self.num_joints = inp.shape[1], inp.shape[2]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]


@torch.no_grad()
def onnx_parity(model: nn.Module, path, x: torch.Tensor) -> float:
    """Max abs difference between the PyTorch model (eval) and the ONNX file on input x."""
    was_training = model.training
    model.eval()
    expected = model(x).cpu().numpy()
    model.train(was_training)
    got = OnnxLifter(path)(x.cpu().numpy())
    return float(np.abs(expected - got).max())
