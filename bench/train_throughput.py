"""Training throughput: windows/s of a full training step, today's per-window data path against the
vectorised SequenceSampler, for the same model and batch, side by side in one run.

    python bench/train_throughput.py --threads 1 --batch 32 --seconds 6        # docs/training.md
    python bench/train_throughput.py --models posemoe:dim=64,heads=4 tcn --compile --bf16 --profile

A step is what posemoe_ros/training does: get a batch of windows, mirror half of them, forward
(`model(x, return_aux=True)`), lifting_loss, backward, gradient clipping, AdamW.
- "windows": `LiftingWindows` (bone augmentation, camera, detector noise per window in Python) through
  a `DataLoader` (num_workers 0, in-process, as the shipped configs) and a flip on the tensors;
- "sampler": `SequenceSampler.sample(batch)` (the whole batch vectorised, flips and the per-frame
  canonical view included) and torch.from_numpy.
Each model runs the two paths in alternating rounds (--rounds) of --seconds / rounds each, so load
from other processes hits both alike; windows/s = windows / wall time over all rounds. Columns also
split a step into data and model (forward + backward + optimiser) time.
GFLOP/s: torch.utils.flop_counter (FlopCounterMode) over one forward + backward at the same batch
(CPU flash attention counted by hand, as in bench/model_complexity.py), times the sampler path's
steps/s; "% peak" against the best 2048^3 float32 matmul of this run at --threads.
Step phases (ms per step): data (synthesis, collation, flip), forward + loss, backward, clipping + AdamW.
--compile: torch.compile (inductor) of the model on the sampler path; --bf16: CPU autocast to bfloat16
for forward and loss; both reported beside eager fp32 (windows/s, sampler path). --profile: for the first
model, a torch.profiler op table of sampler-path steps and a cProfile of today's data path alone.
Models: NAME[:key=value,...] (build_model(NAME, --preset, **overrides)); default PoseMoE at dim 32, 64,
128 (heads dim/16), the entangled transformer and the TCN, all preset s. Clips: the train split of
../shared/data (with extra_h36m17.npz) when present, else procedural motions (noted in the output).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from model_latency import matmul_peak_gflops  # noqa: E402
from posemoe_ros.data.batch_synthesis import SequenceSampler  # noqa: E402
from posemoe_ros.data.windows import LiftingWindows  # noqa: E402
from posemoe_ros.models import build_model  # noqa: E402
from posemoe_ros.skeleton import flip_pose  # noqa: E402
from posemoe_ros.training.losses import LossWeights, lifting_loss  # noqa: E402

DEFAULT_MODELS = ["posemoe:dim=32,heads=2", "posemoe:dim=64,heads=4", "posemoe:dim=128,heads=8", "entangled", "tcn"]


def _sdpa_flops(q, k, v, *args, **kwargs) -> int:
    B, h, L, d = q
    return 2 * 2 * B * h * L * k[-2] * d            # QK^T and AV


def _sdpa_backward_flops(grad_out, q, k, v, *args, **kwargs) -> int:
    B, h, L, d = q
    return 4 * 2 * B * h * L * k[-2] * d            # dV, dP, dQ, dK


SDPA_CPU = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops,
            torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward_flops}


def parse_model(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=")
        overrides[key] = ({"true": True, "false": False}[value.lower()] if value.lower() in ("true", "false")
                          else float(value) if "." in value else int(value) if value.lstrip("-").isdigit() else value)
    return name, overrides


def load_train_clips(data_dir: Path):
    from posemoe_ros.data.splits import make_splits
    files = [data_dir / f for f in ("bandai_h36m17.npz", "cmu_h36m17.npz", "extra_h36m17.npz")]
    if all(f.exists() for f in files):
        clips = make_splits(files[0], files[1], extra_path=files[2])["train"]
        return clips, f"train split of {data_dir.name}/ ({len(clips)} clips, {sum(c.num_frames for c in clips)} frames)"
    from posemoe_ros.data.mocap import Clip
    from posemoe_ros.data.procedural import KINDS, generate_motion
    clips = [Clip(f"{k}{i}", generate_motion(k, 10.0, seed=i), 30.0, {}) for i in range(4) for k in KINDS]
    return clips, "procedural motions (no mocap data found)"


class WindowsPath:
    """Today's path: LiftingWindows through a DataLoader, mirrored on the tensors (train.py's random_flip)."""

    def __init__(self, clips, frames: int, batch: int, seed: int):
        self.ds = LiftingWindows(clips, frames, stride=1, seed=seed, augment=True)
        gen = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(self.ds, batch_size=batch, drop_last=True, num_workers=0,
                                                  sampler=torch.utils.data.RandomSampler(self.ds, generator=gen))
        self.gen, self.it = gen, iter(self.loader)

    def __call__(self):
        try:
            batch = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            batch = next(self.it)
        x, y = batch["input"], batch["target"]
        mask = (torch.rand(x.shape[0], generator=self.gen) < 0.5)[:, None, None, None]
        return torch.where(mask, flip_pose(x), x), torch.where(mask, flip_pose(y), y)


class SamplerPath:
    def __init__(self, clips, frames: int, batch: int, seed: int):
        self.sampler, self.batch = SequenceSampler(clips, frames, seed=seed, flip_prob=0.5), batch

    def __call__(self):
        b = self.sampler.sample(self.batch)
        return torch.from_numpy(b["input"]), torch.from_numpy(b["target"])


class Trainer:
    """One training step as posemoe_ros/training does it (AdamW groups, clipping, lifting_loss)."""

    def __init__(self, model, bf16: bool = False, compiled: bool = False):
        self.model = model
        self.forward = torch.compile(model, dynamic=False) if compiled else model
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        self.opt = torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.99))
        self.bf16, self.weights = bf16, LossWeights()

    def loss(self, x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            pred, aux = self.forward(x, return_aux=True)
            aux = {k: v.float() for k, v in (aux or {}).items() if torch.is_tensor(v)}
            return lifting_loss(pred.float(), y, aux, self.weights)[0]

    def step(self, x, y) -> tuple[float, float, float]:
        """One step; seconds of (forward + loss, backward, clipping + AdamW)."""
        t0 = time.perf_counter()
        with torch.profiler.record_function("forward"):
            loss = self.loss(x, y)
        t1 = time.perf_counter()
        with torch.profiler.record_function("backward"):
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
        t2 = time.perf_counter()
        with torch.profiler.record_function("optimiser"):
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2


def run(path, trainer, seconds: float, max_steps: int) -> np.ndarray:
    """[steps, wall s, data s, forward s, backward s, optimiser s] of steps until `seconds` or `max_steps`."""
    total, t0 = np.zeros(6), time.perf_counter()
    while total[0] < max_steps and time.perf_counter() - t0 < seconds:
        t1 = time.perf_counter()
        with torch.profiler.record_function("data"):
            x, y = path()
        total[2] += time.perf_counter() - t1
        total[3:] += trainer.step(x, y)
        total[0] += 1
    total[1] = time.perf_counter() - t0
    return total


def step_flops(model, x, y) -> float:
    trainer = Trainer(model)
    with FlopCounterMode(display=False, custom_mapping=SDPA_CPU) as counter:
        trainer.loss(x, y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def profile(label: str, paths: dict, trainer, steps: int, top: int = 15) -> list[str]:
    """torch.profiler op table of `steps` sampler-path steps, and cProfile of the old data path alone."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run(paths["sampler"], trainer, 1e9, steps)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top, max_name_column_width=60)
    out = [f"### torch.profiler, {label}, sampler path, {steps} steps (top {top} by self CPU time)\n```\n{table}```"]
    cp = cProfile.Profile()
    cp.enable()
    for _ in range(steps):
        paths["windows"]()
    cp.disable()
    text = io.StringIO()
    pstats.Stats(cp, stream=text).sort_stats("tottime").print_stats(top)
    lines = [l for l in text.getvalue().splitlines() if l.strip()]
    out.append(f"### cProfile, today's data path alone (LiftingWindows + DataLoader + flip), {steps} batches "
               f"(top {top} by own time)\n```\n" + "\n".join(lines[-top - 1:]) + "\n```")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=6.0, help="per path and model, over all rounds")
    ap.add_argument("--steps", type=int, default=10**9, help="at most this many steps per path and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--preset", default="s")
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (sampler path)")
    ap.add_argument("--bf16", action="store_true", help="also bfloat16 autocast on CPU (sampler path)")
    ap.add_argument("--profile", action="store_true", help="cProfile both paths for the first model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    clips, source = load_train_clips(args.data_dir)
    peak = matmul_peak_gflops(args.threads)
    print(f"threads {args.threads}, batch {args.batch}, {args.seconds:g} s per path in {args.rounds} rounds; "
          f"clips: {source}; torch {torch.__version__}; best 2048^3 fp32 matmul {peak:.1f} GFLOP/s; "
          f"load {os.getloadavg()[0]:.1f}\n")
    rows, extra, profiles = [], [], []
    for spec in args.models:
        name, overrides = parse_model(spec)
        model = build_model(name, args.preset, **overrides)
        model.train()
        frames = model.config.num_frames
        paths = {"windows": WindowsPath(clips, frames, args.batch, args.seed),
                 "sampler": SamplerPath(clips, frames, args.batch, args.seed)}
        trainer = Trainer(model)
        for p in paths.values():          # warm-up: allocator, first batch, optimiser state
            trainer.step(*p())
        stats = {k: np.zeros(6) for k in paths}
        for _ in range(args.rounds):
            for key, p in paths.items():
                stats[key] += run(p, trainer, args.seconds / args.rounds, args.steps)
        flops = step_flops(model, *paths["sampler"]())
        rate = {k: v[0] * args.batch / v[1] for k, v in stats.items()}
        ms = {k: " / ".join(f"{1e3 * t / v[0]:.1f}" for t in v[2:]) for k, v in stats.items()}
        gflops = flops * stats["sampler"][0] / stats["sampler"][1] / 1e9
        label = f"{name} " + (",".join(f"{k}={v}" for k, v in overrides.items()) or args.preset)
        params = sum(p.numel() for p in model.parameters())
        rows.append(f"| {label} | {params / 1e3:.0f}k | {rate['windows']:.0f} | {rate['sampler']:.0f} | "
                    f"{rate['sampler'] / rate['windows']:.2f}x | {ms['windows']} | {ms['sampler']} | "
                    f"{flops / args.batch / 1e6:.0f} | {gflops:.2f} | {100 * gflops / peak:.0f} % |")
        variants = {}
        if args.bf16:
            variants["bf16 autocast"] = Trainer(model, bf16=True)
        if args.compile:
            variants["torch.compile"] = Trainer(model, compiled=True)
        for vname, vt in variants.items():
            try:
                t0 = time.perf_counter()
                vt.step(*paths["sampler"]())
                first = time.perf_counter() - t0
                s, wall = run(paths["sampler"], vt, args.seconds / args.rounds, args.steps)[:2]
                s0, wall0 = run(paths["sampler"], trainer, args.seconds / args.rounds, args.steps)[:2]
                extra.append(f"| {label} | {vname} | {s0 * args.batch / wall0:.0f} | {s * args.batch / wall:.0f} | "
                             f"{first:.1f} s |")
            except Exception as exc:  # compilers and bf16 kernels are optional on CPU
                extra.append(f"| {label} | {vname} | - | failed: {type(exc).__name__}: {str(exc)[:80]} | - |")
        if args.profile and not profiles:
            profiles = profile(label, paths, trainer, int(np.clip(stats["sampler"][0] / args.rounds, 3, 30)))
        print(rows[-1], file=sys.stderr, flush=True)
    print("| model | params | windows/s today (LiftingWindows + DataLoader) | windows/s SequenceSampler | speed-up "
          "| ms/step today: data / fwd / bwd / opt | ms/step sampler: data / fwd / bwd / opt "
          "| MFLOP per window (fwd+bwd) | GFLOP/s (sampler) | of matmul peak |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if extra:
        print("\n| model | variant (sampler path) | windows/s eager fp32 | windows/s variant | first step |")
        print("|---|---|---|---|---|")
        print("\n".join(extra))
    for p in profiles:
        print("\n" + p)
    print(f"\nload {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
