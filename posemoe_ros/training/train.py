"""Train a lifting model (PoseMoE or a baseline) from a YAML config.

    posemoe-train --config config/train/posemoe_s.yaml [--data-dir DIR | --bandai P --cmu P]
                  [--out runs/NAME] [--resume | --init WEIGHTS] [--max-steps N] [--device auto|cpu|cuda]
    torchrun --nproc_per_node=N -m posemoe_ros.training.train --config ...   # DDP, one process per GPU

Sequences come from posemoe_ros.data (synthetic cameras + detector noise on real mocap), each
frame turned onto the optical axis as the node turns it (optical_axis.view_on_axis). The
streaming transformers train on sequences longer than their window with the banded causal masks
they stream with, a loss on every frame, and an output delay (lookahead) drawn per step from
0..max_lookahead, so one model serves every lookahead. Validation uses deterministic sequences of
the val split. Outputs in --out: best.safetensors, last.safetensors (weights, loadable with
models.weights.load_model; their metadata counts the steps, windows and CPU-hours behind them,
carried over from --init), state.safetensors + state.json (optimizer and step, for --resume; no
pickles), log.csv and curves.png. Stopped at any moment, a run goes on with --resume (same
schedule) or --init OUT/best.safetensors (a new schedule from those weights).
"""
import argparse
import csv
import json
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from posemoe_ros import metrics
from posemoe_ros.geometry.optical_axis import rotate_points, view_on_axis
from posemoe_ros.models.streaming import is_streaming
from posemoe_ros.training.losses import LossWeights, lifting_loss


# -----------------------------------------------------------------------------
# config

@dataclass
class ModelSection:
    name: str = "posemoe"          # posemoe | entangled | tcn
    preset: str = "s"
    overrides: dict = field(default_factory=dict)   # passed to build_model(**overrides)


@dataclass
class DataSection:
    data_dir: str | None = "../shared/data"   # relative paths: to the CWD, else to the config's folders
    bandai: str = "bandai_h36m17.npz"          # file names inside data_dir (or absolute paths)
    cmu: str = "cmu_h36m17.npz"
    extra: str | None = "extra_h36m17.npz"    # optional third file (ReActIdle, more CMU motions); null = none
    sequence_frames: int = 0                  # training sequence length; 0 = 2W-1 (streaming) or W (TCN)
    val_stride: int = 8
    val_windows: int = 256                     # fixed, evenly spaced subset of the val windows
    bone_augment: bool = True
    num_workers: int = 1
    # >0: training batches are synthesised in this many worker processes (a GPU outruns one core's
    # ~0.4 ms per sequence); 0 = in the training process, one seeded stream per rank
    sampler_workers: int = 0


@dataclass
class OptimSection:
    steps: int = 10000
    batch_size: int = 64           # global: split across DDP processes
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_steps: int = 200
    grad_clip: float = 1.0
    flip_prob: float = 0.5
    seed: int = 0
    val_every: int = 500
    log_every: int = 25
    num_threads: int = 0           # torch CPU threads per process; 0 = library default
    # >0: a wall-clock budget. The cosine runs on max(step, time) progress and the run ends, validated
    # and saved, when the budget is spent, so a leg fits a fixed lease (a GPU's) at any speed.
    max_minutes: float = 0.0


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossWeights = field(default_factory=LossWeights)


def _section(cls, values: dict | None):
    values = values or {}
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**values)


def load_config(path: str | Path) -> TrainConfig:
    raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(raw) - {"model", "data", "optim", "loss"}
    if unknown:
        raise ValueError(f"unknown config sections: {sorted(unknown)}")
    return TrainConfig(model=_section(ModelSection, raw.get("model")),
                       data=_section(DataSection, raw.get("data")),
                       optim=_section(OptimSection, raw.get("optim")),
                       loss=_section(LossWeights, raw.get("loss")))


def resolve_path(p: str | Path, anchors: list[Path]) -> Path:
    """Absolute path for p: as given if absolute or found from the CWD, else under the first anchor
    (or one of its parents) where it exists."""
    p = Path(p).expanduser()
    if p.is_absolute() or p.exists():
        return p.resolve()
    for anchor in anchors:
        for base in [anchor, *anchor.parents]:
            if (base / p).exists():
                return (base / p).resolve()
    return p.resolve()


def data_paths(cfg: TrainConfig, anchors: list[Path]) -> tuple[Path, Path]:
    base = resolve_path(cfg.data.data_dir, anchors) if cfg.data.data_dir else Path.cwd()
    bandai, cmu = base / cfg.data.bandai, base / cfg.data.cmu
    for p in (bandai, cmu):
        if not p.exists():
            raise FileNotFoundError(f"{p} not found: pass --data-dir or --bandai/--cmu")
    return bandai, cmu


# -----------------------------------------------------------------------------
# schedule, augmentation, validation

def learning_rate(step: int, o: OptimSection, time_spent: float = 0.0) -> float:
    """Linear warmup, then cosine decay to min_lr at o.steps, or earlier when time_spent (the
    fraction of o.max_minutes used) runs ahead of the steps."""
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = min(1.0, max(time_spent, (step - o.warmup_steps) / max(1, o.steps - o.warmup_steps)))
    return o.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (o.lr - o.min_lr)


def on_axis(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) of a batch with every frame turned onto the optical axis, as the node does."""
    x, R = view_on_axis(batch["input"].numpy())                         # (B,T,J,3), (B,T,3,3)
    y = rotate_points(batch["target"].numpy().astype(np.float64), R)     # root-relative stays root-relative
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32))


def delayed(pred: torch.Tensor, target: torch.Tensor, aux: dict, delay: int):
    """Align outputs with the frames they answer for: output t is frame t - delay."""
    if delay == 0:
        return pred, target, aux
    n = pred.shape[1] - delay
    return pred[:, delay:], target[:, :n], {k: v[:, delay:] for k, v in aux.items() if k in ("xy", "z")}


def sequence_frames(cfg: TrainConfig, model) -> int:
    if cfg.data.sequence_frames:
        return cfg.data.sequence_frames
    W = model.config.num_frames
    return 2 * W - 1 if is_streaming(model) else W


@torch.no_grad()
def validate(model, loader, device) -> dict[str, float]:
    """MPJPE over every frame (delay 0), and of the last frame (full context) with its P-MPJPE."""
    model.eval()
    preds, targets = [], []
    for batch in loader:
        x, y = on_axis(batch)
        preds.append(model(x.to(device)).float().cpu())
        targets.append(y)
    model.train()
    pred, target = torch.cat(preds), torch.cat(targets)            # (N, T, J, 3)
    return {"val_mpjpe_mm": 1000 * metrics.mpjpe(pred, target),
            "val_last_mpjpe_mm": 1000 * metrics.mpjpe(pred[:, -1], target[:, -1]),
            "val_p_mpjpe_mm": 1000 * metrics.p_mpjpe(pred[:, -1], target[:, -1])}


class SampledBatches(torch.utils.data.IterableDataset):
    """Endless training batches from a SequenceSampler: iterated in the training process, or in
    each DataLoader worker with a stream of its own (worker k seeds seed + 7919 k)."""

    def __init__(self, clips, length: int, batch_size: int, seed: int, **sampler_args):
        super().__init__()
        self.clips, self.length, self.batch_size, self.seed, self.sampler_args = clips, length, batch_size, seed, sampler_args

    def __iter__(self):
        from posemoe_ros.data.batch_synthesis import SequenceSampler
        info = torch.utils.data.get_worker_info()
        sampler = SequenceSampler(self.clips, self.length, seed=self.seed + 7919 * (info.id if info else 0),
                                  **self.sampler_args)
        while True:
            batch = sampler.sample(self.batch_size)
            yield {k: torch.from_numpy(batch[k]) for k in ("input", "target")}


def cpu_hours() -> float:
    """CPU time of this process and its finished children (data workers), hours."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime) / 3600


# -----------------------------------------------------------------------------
# checkpoints (safetensors + JSON; never pickle)

def save_train_state(out: Path, optimizer, step: int, best: float, cfg: TrainConfig):
    sd = optimizer.state_dict()
    tensors = {f"opt.{i}.{k}": v.contiguous() for i, s in sd["state"].items() for k, v in s.items()}
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(out / "state.safetensors"))
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    (out / "state.json").write_text(json.dumps(
        {"step": step, "best_val_mpjpe_mm": best, "param_groups": groups, "config": asdict(cfg)}, indent=1))


def load_train_state(out: Path, optimizer) -> tuple[int, float]:
    meta = json.loads((out / "state.json").read_text())
    tensors = load_file(str(out / "state.safetensors"))
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return meta["step"], meta["best_val_mpjpe_mm"]


CSV_COLUMNS = ["step", "lr", "loss", "mpjpe", "n_mpjpe", "velocity", "aux_xy", "aux_z",
               "val_mpjpe_mm", "val_last_mpjpe_mm", "val_p_mpjpe_mm", "elapsed_s"]


def plot_curves(csv_path: Path, png_path: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(csv.DictReader(csv_path.open()))
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    tr = [(int(r["step"]), float(r["loss"])) for r in rows if r["loss"]]
    va = [(int(r["step"]), float(r["val_mpjpe_mm"]), float(r["val_last_mpjpe_mm"]), float(r["val_p_mpjpe_mm"]))
          for r in rows if r["val_mpjpe_mm"]]
    if tr:
        a.plot(*zip(*tr), label="train loss")
        a.set_yscale("log")
    a.set(xlabel="step", ylabel="loss", title="training loss")
    if va:
        s, v, c, pa = zip(*va)
        b.plot(s, v, "o-", label="MPJPE, all frames")
        b.plot(s, c, "s-", label="MPJPE, last frame")
        b.plot(s, pa, "^-", label="P-MPJPE, last frame")
        b.legend()
    b.set(xlabel="step", ylabel="mm", title="validation error")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


# -----------------------------------------------------------------------------
# training

def time_spent(t0: float, budget_s: float, ddp: bool) -> float:
    """Fraction of the wall-clock budget used (0 without one); under DDP the ranks' largest, so all
    of them stop at the same step."""
    if budget_s <= 0:
        return 0.0
    spent = torch.tensor([(time.time() - t0) / budget_s])
    if ddp:
        dist.all_reduce(spent, op=dist.ReduceOp.MAX)
    return float(spent)


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(name)


def _seed_worker(worker_id: int):
    # numpy in workers would otherwise repeat the parent's stream in every worker and epoch
    np.random.seed(torch.initial_seed() % 2**32)


def train(cfg: TrainConfig, bandai: Path, cmu: Path, out: Path, resume: bool = False,
          max_steps: int | None = None, device: str = "auto", progress: bool = True,
          init: Path | None = None, extra: Path | None = None) -> torch.nn.Module:
    """Train per cfg; under torchrun (WORLD_SIZE > 1) runs DDP. Returns the trained (unwrapped) model."""
    from posemoe_ros.data.splits import make_splits
    from posemoe_ros.data.windows import LiftingWindows
    from posemoe_ros.models import build_model
    from posemoe_ros.models.weights import save_weights

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    ddp = world > 1
    if ddp:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    master = rank == 0
    o = cfg.optim
    if o.num_threads > 0:
        torch.set_num_threads(o.num_threads)

    torch.manual_seed(o.seed)                 # identical init on every rank (DDP also broadcasts it)
    model = build_model(cfg.model.name, cfg.model.preset, **cfg.model.overrides).to(dev)
    history = {"total_steps": 0, "total_windows": 0, "cpu_hours": 0.0, "gpu_hours": 0.0}  # behind the start weights
    if init is not None and not resume:
        from posemoe_ros.models.weights import load_model, model_metadata
        model.load_state_dict(load_model(init).state_dict())
        before = model_metadata(init)
        history = {k: type(v)(before.get(k, v)) for k, v in history.items()}
    streaming = is_streaming(model)
    max_delay = getattr(model.config, "max_lookahead", 0) if streaming else 0
    length = sequence_frames(cfg, model)

    splits = make_splits(bandai, cmu, extra_path=extra) if extra else make_splits(bandai, cmu)
    # a whole batch synthesised at once (flip and per-frame on-axis view included): ~10x faster than
    # per-window Python (bench/train_throughput.py); each DDP rank draws its own stream
    per_rank_batch = max(1, o.batch_size // world)
    batches = SampledBatches(splits["train"], length, per_rank_batch, o.seed + 1000 * rank,
                             augment=cfg.data.bone_augment, flip_prob=o.flip_prob)
    if cfg.data.sampler_workers > 0:   # DataLoader workers run one thread each by default
        batches = DataLoader(batches, batch_size=None, num_workers=cfg.data.sampler_workers, prefetch_factor=4,
                             pin_memory=dev.type == "cuda", persistent_workers=True)
    feed = iter(batches)
    val_ds = LiftingWindows(splits["val"], length, stride=cfg.data.val_stride, seed=0,
                            augment=False, deterministic=True)
    n_val = min(cfg.data.val_windows, len(val_ds))
    val_ds = Subset(val_ds, np.linspace(0, len(val_ds) - 1, n_val).round().astype(int).tolist())

    gen = torch.Generator().manual_seed(o.seed + rank)
    val_loader = DataLoader(val_ds, batch_size=per_rank_batch, shuffle=False,
                            num_workers=cfg.data.num_workers, worker_init_fn=_seed_worker)

    # AdamW with weight decay on matrices only (not on norms and biases), as in nanoGPT
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": o.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=(0.9, 0.99), fused=dev.type == "cuda")

    out.mkdir(parents=True, exist_ok=True)
    step, best = 0, float("inf")
    if resume and (out / "state.json").exists():
        from posemoe_ros.models.weights import load_model, model_metadata
        model.load_state_dict(load_model(out / "last.safetensors").state_dict())
        step, best = load_train_state(out, optimizer)
        before = model_metadata(out / "last.safetensors")
        history = {k: type(v)(before.get(k, v)) for k, v in history.items()}
        history["total_steps"] -= step  # the run's own steps are added back below
        history["total_windows"] -= step * o.batch_size
    run_step0, cpu0 = step, cpu_hours()
    end = min(o.steps, max_steps) if max_steps is not None else o.steps
    raw_model = model
    if ddp:
        model = DistributedDataParallel(model, device_ids=[local_rank] if dev.type == "cuda" else None)

    csv_path = out / "log.csv"
    if master:
        # keep logged rows up to the resumed step; start fresh otherwise
        old = list(csv.DictReader(csv_path.open())) if resume and csv_path.exists() else []
        with csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, CSV_COLUMNS)
            w.writeheader()
            w.writerows(r for r in old if int(r["step"]) <= step)
    meta = {"model_name": cfg.model.name, "train_config": json.dumps(asdict(cfg)), "sequence_frames": str(length)}

    def checkpoint(name: str, val: dict):
        totals = {"total_steps": history["total_steps"] + step,
                  "total_windows": history["total_windows"] + step * o.batch_size,
                  "cpu_hours": f"{history['cpu_hours'] + (cpu_hours() - cpu0) * world:.3f}",
                  # a GPU's hours are the wall time it was held, every rank's
                  "gpu_hours": f"{history['gpu_hours'] + (world * (time.time() - t0) / 3600 if dev.type == 'cuda' else 0):.3f}"}
        save_weights(raw_model, out / f"{name}.safetensors",
                     extra_metadata={**meta, "step": str(step), **totals, **{k: f"{v:.3f}" for k, v in val.items()}})

    def log(row: dict):
        with csv_path.open("a", newline="") as f:
            csv.DictWriter(f, CSV_COLUMNS).writerow({**row, "step": step, "elapsed_s": f"{time.time() - t0:.1f}"})

    t0, sums, count = time.time(), {}, 0
    budget_s = 60 * o.max_minutes
    bar = tqdm(total=end, initial=step, disable=not (master and progress), desc=cfg.model.name, dynamic_ncols=True)
    model.train()
    while step < end:
        batch = next(feed)
        spent = time_spent(t0, budget_s, ddp)
        lr = learning_rate(step, o, spent)
        for g in optimizer.param_groups:
            g["lr"] = lr
        x, y = (batch[k].to(dev, non_blocking=True) for k in ("input", "target"))
        if streaming:  # one output delay per step, so every delay the last layer knows gets trained
            delay = int(torch.randint(0, max_delay + 1, (), generator=gen))
            pred, aux = model(x, delay=delay, return_aux=True)
        else:
            delay, (pred, aux) = 0, model(x, return_aux=True)
        loss, parts = lifting_loss(*delayed(pred, y, aux, delay), cfg.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        step += 1
        bar.update(1)
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1

        last = step == end or spent >= 1.0
        if master and (step % o.log_every == 0 or last):
            mean = {k: v / count for k, v in sums.items()}
            bar.set_postfix(loss=f"{mean['total']:.4f}", lr=f"{lr:.1e}")
            total = mean.pop("total")
            log({"lr": f"{lr:.3e}", "loss": f"{total:.5f}", **{k: f"{v:.5f}" for k, v in mean.items()}})
            sums, count = {}, 0
        if step % o.val_every == 0 or last:
            if master:
                val = validate(raw_model, val_loader, dev)
                log({k: f"{v:.2f}" for k, v in val.items()})
                bar.write(f"step {step}: " + ", ".join(f"{k} {v:.1f}" for k, v in val.items()))
                if val["val_mpjpe_mm"] < best:
                    best = val["val_mpjpe_mm"]
                    checkpoint("best", val)
                checkpoint("last", val)
                save_train_state(out, optimizer, step, best, cfg)
                plot_curves(csv_path, out / "curves.png")
            if ddp:
                dist.barrier()
        if last:
            break
    bar.close()
    if ddp:
        dist.destroy_process_group()
    return raw_model


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="posemoe-train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML training config (config/train/*.yaml)")
    ap.add_argument("--data-dir", help="folder holding the bandai and cmu npz files (overrides the config)")
    ap.add_argument("--bandai", help="path of the Bandai npz (overrides --data-dir)")
    ap.add_argument("--cmu", help="path of the CMU npz (overrides --data-dir)")
    ap.add_argument("--out", help="output folder (default runs/<config name>)")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.safetensors + state")
    ap.add_argument("--init", help="start from these weights with a new schedule (their step, window and "
                    "CPU-hour counts carry over into the new weights' metadata)")
    ap.add_argument("--extra", help="path of the extra npz (overrides the config's data.extra)")
    ap.add_argument("--max-steps", type=int,
                    help="stop after this many steps (the LR schedule keeps the config's length)")
    ap.add_argument("--steps", type=int,
                    help="override optim.steps (the schedule's length), e.g. to extend a run with --resume")
    ap.add_argument("--minutes", type=float,
                    help="override optim.max_minutes: end the run, its schedule decayed, after this much wall time")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    args = ap.parse_args(argv)

    cfg_path = Path(args.config).resolve()
    cfg = load_config(cfg_path)
    if args.data_dir:
        cfg.data.data_dir = str(Path(args.data_dir).resolve())
    if args.steps:
        cfg.optim.steps = args.steps
    if args.minutes is not None:
        cfg.optim.max_minutes = args.minutes
    anchors = [cfg_path.parent]
    bandai, cmu = data_paths(cfg, anchors) if not (args.bandai and args.cmu) else (None, None)
    bandai = Path(args.bandai).resolve() if args.bandai else bandai
    cmu = Path(args.cmu).resolve() if args.cmu else cmu
    if args.extra:
        extra = Path(args.extra).resolve()
    elif cfg.data.extra and bandai is not None and (bandai.parent / cfg.data.extra).exists():
        extra = bandai.parent / cfg.data.extra
    else:
        extra = None
    out = Path(args.out) if args.out else Path("runs") / cfg_path.stem
    train(cfg, bandai, cmu, out, resume=args.resume, max_steps=args.max_steps, device=args.device,
          progress=not args.no_progress, init=Path(args.init) if args.init else None, extra=extra)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
