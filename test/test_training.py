"""Training and evaluation end to end on small npz files in the shared format (procedural motion),
so these tests never need ../shared: a few-step run with checkpoints/CSV/PNG, resume, an overfit
check, a 2-process DDP run (gloo) and posemoe-eval's reports."""
import csv
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from posemoe_ros.skeleton import JOINT_NAMES
from posemoe_ros.training import evaluate, train
from posemoe_ros.training.losses import LossWeights, lifting_loss

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "train" / "tiny_test.yaml"
KINDS = ("walk", "turn", "wave", "reach", "sit")


def write_npz(path: Path, clips: dict[str, np.ndarray], **extra):
    """A motion npz in the shared format: keys, j3d_<k> (pelvis-relative, float16), root_<k>, fps."""
    arrays = {"keys": np.array(list(clips)), "fps": np.array(30.0), "joint_names": np.array(JOINT_NAMES)}
    for k, joints in clips.items():
        arrays[f"j3d_{k}"] = (joints - joints[:, :1]).astype(np.float16)
        arrays[f"root_{k}"] = joints[:, 0].astype(np.float32)
    np.savez(path, **arrays, **{k: np.array(v) for k, v in extra.items()})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from posemoe_ros.data.procedural import generate_motion
    d = tmp_path_factory.mktemp("data")
    # Bandai-style names dataset_content_style_take; dataset-1 "tired" is a val style in splits.py
    styles = ("normal", "angry", "tired", "normal")
    bandai = {f"dataset-1_{kind}_{styles[i]}_{i:03d}": generate_motion(kind, seconds=4, seed=i)
              for i in range(4) for kind in KINDS}
    write_npz(d / "bandai_h36m17.npz", bandai, content=[KINDS.index(k.split("_")[1]) for k in bandai],
              style=[styles.index(k.split("_")[2]) for k in bandai])
    subjects = ["05", "06", "07", "08", "10", "16", "32", "35"]
    cmu = {f"{s}_{t:02d}": generate_motion(KINDS[(i + t) % 5], seconds=3, seed=100 + 7 * i + t)
           for i, s in enumerate(subjects) for t in (1, 2)}
    write_npz(d / "cmu_h36m17.npz", cmu, subject=np.array([int(k.split("_")[0]) for k in cmu], np.int16),
              trial=[int(k.split("_")[1]) for k in cmu])
    return d


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    args = ["--config", str(TINY), "--data-dir", str(data_dir), "--out", str(out), "--device", "cpu",
            "--no-progress"]
    assert train.main(args + ["--max-steps", "6"]) == 0
    assert json.loads((out / "state.json").read_text())["step"] == 6
    weights_at_6, log_at_6 = (out / "last.safetensors").read_bytes(), read_log(out)
    assert train.main(args + ["--resume", "--max-steps", "6"]) == 0      # already there: no step taken
    assert (out / "last.safetensors").read_bytes() == weights_at_6
    assert train.main(args + ["--resume"]) == 0                 # continues to the config's 12 steps
    assert read_log(out)[:len(log_at_6)] == log_at_6            # the first 6 steps' rows are kept
    return out


def read_log(out: Path) -> list[dict]:
    return list(csv.DictReader((out / "log.csv").open()))


def test_run_writes_checkpoints_log_and_plot(run_dir):
    from posemoe_ros.models.weights import load_model
    for name in ("best.safetensors", "last.safetensors", "state.safetensors", "state.json", "log.csv",
                 "curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    model = load_model(run_dir / "last.safetensors")
    x = torch.zeros(2, model.config.num_frames, 17, 3)
    assert model(x).shape == x.shape
    rows = read_log(run_dir)
    val = [r for r in rows if r["val_mpjpe_mm"]]
    assert all(np.isfinite(float(r["val_mpjpe_mm"])) for r in val)


def test_resume_continues_step_count(run_dir):
    state = json.loads((run_dir / "state.json").read_text())
    assert state["step"] == 12
    steps = [int(r["step"]) for r in read_log(run_dir) if r["loss"]]
    assert steps == sorted(steps) and steps[0] < 6 and steps[-1] == 12   # rows before and after the resume
    assert len(steps) == len(set(steps))


def test_loss_decreases_on_a_fixed_batch(data_dir):
    from posemoe_ros.data.mocap import load_clips
    from posemoe_ros.data.windows import LiftingWindows
    cfg = train.load_config(TINY)
    torch.manual_seed(0)
    from posemoe_ros.models import build_model
    model = build_model(cfg.model.name, cfg.model.preset, **cfg.model.overrides)
    ds = LiftingWindows(load_clips(data_dir / "bandai_h36m17.npz")[:4], model.config.num_frames,
                        stride=8, seed=0, augment=False, deterministic=True)
    batch = torch.utils.data.default_collate([ds[i] for i in range(8)])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        pred, aux = model(batch["input"], return_aux=True)
        loss, _ = lifting_loss(pred, batch["target"], aux, LossWeights())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def _ddp_worker(rank: int, world: int, port: int, cfg_path: str, data_dir: str, out: str):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = train.load_config(cfg_path)
    cfg.data.num_workers = 0
    model = train.train(cfg, Path(data_dir) / "bandai_h36m17.npz", Path(data_dir) / "cmu_h36m17.npz",
                        Path(out), max_steps=4, device="cpu", progress=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.safetensors")


def test_ddp_two_processes_keep_identical_weights(data_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(TINY), str(data_dir), str(tmp_path)), nprocs=2, join=True)
    w0, w1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert w0.keys() == w1.keys()
    for k in w0:
        torch.testing.assert_close(w0[k], w1[k], rtol=0, atol=0, msg=k)
    assert json.loads((tmp_path / "state.json").read_text())["step"] == 4    # rank 0 saved
    assert not (tmp_path / "log.csv").exists() or read_log(tmp_path)


def test_eval_writes_json_markdown_and_plot(run_dir, data_dir, tmp_path):
    out = tmp_path / "eval"
    assert evaluate.main(["--weights", str(run_dir / "best.safetensors"), "--data",
                          str(data_dir / "cmu_h36m17.npz"), "--out", str(out), "--stride", "8",
                          "--flip-tta", "--no-progress"]) == 0
    result = json.loads((out / "metrics.json").read_text())
    for mode in ("centre", "causal"):
        for key in ("mpjpe_mm", "p_mpjpe_mm", "n_mpjpe_mm", "pck150", "auc", "per_joint_mpjpe_mm"):
            assert key in result[mode], (mode, key)
        assert result[mode]["p_mpjpe_mm"] <= result[mode]["mpjpe_mm"] + 1e-6
        assert len(result[mode]["per_joint_mpjpe_mm"]) == 17
    assert result["mpjve_mm_per_frame"] > 0
    assert result["num_clips"] == 16 and len(result["per_clip"]) == 16
    assert "0" in result["lookahead"]
    assert "MPJPE (mm)" in (out / "results.md").read_text()
    assert (out / "eval.png").stat().st_size > 1000
    # the split option: the held-out CMU test subjects only
    assert evaluate.main(["--weights", str(run_dir / "best.safetensors"), "--split", "test",
                          "--data-dir", str(data_dir), "--out", str(tmp_path / "test"),
                          "--stride", "16", "--no-progress"]) == 0
    test_result = json.loads((tmp_path / "test" / "metrics.json").read_text())
    assert 0 < test_result["num_clips"] < 16


def test_time_budget_ends_the_run_with_its_schedule_decayed(data_dir, tmp_path):
    """A wall-clock budget (a GPU lease) ends a run of any speed early, validated and saved, with its
    LR decayed by time; the batches come from sampler worker processes, as on a GPU."""
    from posemoe_ros.models.weights import model_metadata
    cfg = train.load_config(TINY)
    cfg.optim.steps, cfg.optim.val_every, cfg.optim.max_minutes = 1_000_000, 1_000_000, 0.1
    cfg.data.sampler_workers, cfg.optim.num_threads = 2, 1
    assert train.learning_rate(10, cfg.optim, 1.0) == cfg.optim.min_lr
    assert train.learning_rate(10, cfg.optim, 0.5) < 0.6 * cfg.optim.lr
    train.train(cfg, data_dir / "bandai_h36m17.npz", data_dir / "cmu_h36m17.npz", tmp_path, device="cpu",
                progress=False)
    step = json.loads((tmp_path / "state.json").read_text())["step"]
    assert cfg.optim.warmup_steps < step < cfg.optim.steps
    meta = model_metadata(tmp_path / "last.safetensors")
    assert int(meta["step"]) == int(meta["total_steps"]) == step and float(meta["gpu_hours"]) == 0.0
    rows = read_log(tmp_path)
    assert rows[-1]["val_mpjpe_mm"] and float(rows[-1]["elapsed_s"]) >= 6.0
    lrs = [float(r["lr"]) for r in rows if r["loss"]]
    assert lrs[0] > 0.5 * cfg.optim.lr and lrs[-1] < 0.05 * cfg.optim.lr
