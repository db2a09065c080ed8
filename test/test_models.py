"""Lifting networks: shapes, gradients, router, causality, flip TTA, weights files, ONNX export.
Streaming (the cached one-frame step) is tested in test_streaming.py."""
import pytest
import torch
import torch.nn as nn

from posemoe_ros.models import MODEL_NAMES, PRESETS, build_model
from posemoe_ros.models.export import OnnxLifter, export_onnx, onnx_parity
from posemoe_ros.models.flip import flip_tta
from posemoe_ros.models.weights import load_model, model_metadata, save_weights
from posemoe_ros.skeleton import ROOT, flip_pose

TINY = {
    "posemoe": dict(dim=16, heads=2, encoder_layers=1, decoder_layers=1, max_lookahead=2),
    "entangled": dict(dim=16, heads=2, layers=2, max_lookahead=2),
    "tcn": dict(channels=32, filter_widths=[3, 3], dropout=0.0),
}
TRANSFORMERS = ("posemoe", "entangled")  # causal by construction: banded temporal attention


def tiny(name, num_frames=9, **kw):
    torch.manual_seed(0)
    return build_model(name, "s", num_frames=num_frames, **{**TINY[name], **kw})


def keypoints(B, T, J=17, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, J, 3, generator=g) * 0.3
    x[..., 2] = torch.rand(B, T, J, generator=g)
    return x


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("T", [1, 27, 81])
def test_output_shape_and_root(name, T):
    model = tiny(name, num_frames=T).eval()
    pose, aux = model(keypoints(2, T), return_aux=True)
    assert pose.shape == (2, T, 17, 3) and pose.dtype == torch.float32
    assert torch.isfinite(pose).all()
    assert pose[:, :, ROOT].abs().max() == 0
    assert model.config.num_frames == T and model.config.num_joints == 17
    if name == "posemoe":
        assert aux["xy"].shape == (2, T, 17, 2) and aux["z"].shape == (2, T, 17, 1)
        assert torch.equal(pose, torch.cat([aux["xy"], aux["z"]], -1))
    else:
        assert aux == {}


def test_posemoe_gradients_reach_both_experts_priors_and_router():
    model = tiny("posemoe")
    pose, aux = model(keypoints(2, 9), return_aux=True)
    (pose.square().mean() + aux["router"][..., 0].mean()).backward()
    groups = {
        "2d expert": model.pose_expert, "depth expert": model.depth_expert.blocks,
        "depth reads 2d": model.depth_expert.read, "router": model.router, "decoder": model.decoder,
    }
    for label, module in groups.items():
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), label
        assert sum(g.abs().sum() for g in grads) > 0, label
    assert model.depth_expert.depth_tokens.grad.abs().sum() > 0


def test_router_weights_are_a_distribution_per_token():
    model = tiny("posemoe").eval()
    _, aux = model(keypoints(3, 9), return_aux=True)
    w = aux["router"]
    assert w.shape == (3, 9, 17, 2)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 9, 17))


def test_depth_priors_are_gaussian_tokens():
    model = build_model("posemoe", "s")
    tokens = model.depth_expert.depth_tokens
    assert tokens.shape[-2:] == (17, model.config.dim)
    assert 0.7 < tokens.std().item() < 1.3  # nn.init.normal_, not zeros


def causal(name):
    return {"causal": True} if name == "tcn" else {}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_causal_models_ignore_future_frames(name):
    T, t = 9, 4
    model = tiny(name, **causal(name)).eval()
    x = keypoints(2, T)
    x_future = x.clone()
    x_future[:, t + 1:] = keypoints(2, T - t - 1, seed=7)
    with torch.no_grad():
        a, b = model(x), model(x_future)
    torch.testing.assert_close(a[:, :t + 1], b[:, :t + 1], rtol=0, atol=1e-6)
    assert (a[:, t + 1:] - b[:, t + 1:]).abs().max() > 1e-4  # the future frames do matter


def test_non_causal_tcn_uses_future_frames():
    model = tiny("tcn").eval()
    x = keypoints(1, 9)
    x_future = x.clone()
    x_future[:, 5:] += 0.5
    with torch.no_grad():
        # frame 2 sees frames 5, 6 (the tiny TCN's receptive field is 9 frames, 4 each side)
        assert (model(x)[:, 2] - model(x_future)[:, 2]).abs().max() > 1e-5


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_transformer_frames_do_not_depend_on_their_position_or_on_frames_beyond_the_receptive_field(name):
    # 2 temporal layers deep with W = 5: frame t reads frames t-8 .. t (4 per layer), nothing older.
    model = tiny(name, num_frames=5).eval()
    x = keypoints(2, 12)
    older = torch.cat([keypoints(2, 7, seed=9), x], 1)  # 7 unrelated frames before the same 12
    with torch.no_grad():
        a, b = model(x), model(older)[:, 7:]
    torch.testing.assert_close(a[:, 8:], b[:, 8:], rtol=0, atol=1e-6)  # full receptive field in both
    assert (a[:, :8] - b[:, :8]).abs().max() > 1e-4  # younger frames of x did miss the older context


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_delay_k_answers_for_frame_t_minus_k_from_frames_up_to_t(name):
    model = tiny(name).eval()
    for p in model.parameters():  # the delay parameters start at zero: give them something to say
        torch.nn.init.normal_(p, std=0.3) if p.dim() >= 1 else None
    x = keypoints(1, 9)
    x_later = x.clone()
    x_later[:, 6:] = keypoints(1, 3, seed=5)
    with torch.no_grad():
        d0, d2 = model(x, delay=0), model(x, delay=2)
        d2_later = model(x_later, delay=2)
    assert (d0 - d2).abs().max() > 1e-4
    torch.testing.assert_close(d2[:, :6], d2_later[:, :6], rtol=0, atol=1e-6)  # output t reads up to t only
    assert (d2[:, 6:] - d2_later[:, 6:]).abs().max() > 1e-4


def test_flip_pose_twice_is_identity():
    x = keypoints(2, 5)
    torch.testing.assert_close(flip_pose(flip_pose(x)), x, rtol=0, atol=0)
    assert not torch.equal(flip_pose(x), x)


class MirrorSymmetric(nn.Module):
    """f(x) = (g(x) + flip(g(flip(x)))) / 2: equivariant to the flip by construction."""

    def __init__(self, g):
        super().__init__()
        self.g = g

    def forward(self, x):
        return 0.5 * (self.g(x) + flip_pose(self.g(flip_pose(x))))


def test_flip_tta_of_mirror_symmetric_model_changes_nothing():
    g = tiny("posemoe").eval()
    f = MirrorSymmetric(g)
    x = keypoints(2, 9)
    with torch.no_grad():
        torch.testing.assert_close(flip_tta(f, x), f(x), rtol=0, atol=1e-6)
        # ...while for the plain network TTA does change the prediction
        assert (flip_tta(g, x) - g(x)).abs().max() > 1e-5


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_safetensors_round_trip(name, tmp_path):
    model = tiny(name, **causal(name)).eval()
    path = save_weights(model, tmp_path / "m.safetensors", extra_metadata={"run": "test"})
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    x = keypoints(2, 9)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    meta = model_metadata(path)
    assert meta["model"] == name and meta["run"] == "test"
    assert path.read_bytes()[:8] != b"PK\x03\x04"  # not a torch.save zip/pickle


def test_load_rejects_wrong_shapes_missing_tensors_and_truncation(tmp_path):
    from safetensors.torch import load_file, save_file
    model = tiny("posemoe")
    path = save_weights(model, tmp_path / "m.safetensors")
    meta = model_metadata(path)
    state = load_file(str(path))

    bad = dict(state)
    bad["xy_head.1.weight"] = torch.zeros(3, 16)
    del bad["z_head.1.bias"]
    bad["extra.weight"] = torch.zeros(1)
    save_file(bad, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(ValueError) as err:
        load_model(tmp_path / "bad.safetensors")
    msg = str(err.value)
    assert "missing (1): z_head.1.bias" in msg and "unexpected (1): extra.weight" in msg
    assert "xy_head.1.weight: file (3, 16) vs model (2, 16)" in msg

    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_model(tmp_path / "cut.safetensors")

    torch.save(model.state_dict(), tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path / "pickle.pt")

    save_file(state, str(tmp_path / "nometa.safetensors"))
    with pytest.raises(ValueError, match="metadata"):
        load_model(tmp_path / "nometa.safetensors")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_onnx_parity_across_batch_sizes(name, tmp_path):
    model = tiny(name, **causal(name))
    path = export_onnx(model, tmp_path / f"{name}.onnx", batch=2)
    import onnx
    assert onnx.load(str(path)).opset_import[0].version >= 17
    T = 12 if name in TRANSFORMERS else 9  # streaming: 12 steps, past the 8-slot cache; TCN: its window
    for B in (1, 5):
        assert onnx_parity(model, path, keypoints(B, T, seed=B)) <= 1e-4
        if name in TRANSFORMERS:  # with an output delay too
            assert onnx_parity(model, path, keypoints(B, 12, seed=B), delay=2) <= 1e-4
    if name == "tcn":
        assert OnnxLifter(path, intra_op_threads=1)(keypoints(3, 9).numpy()).shape == (3, 9, 17, 3)


@pytest.mark.parametrize("preset", sorted(PRESETS["posemoe"]))
def test_entangled_matches_posemoe_parameter_count(preset):
    def count(name):
        with torch.device("meta"):  # shapes only: no memory, no init cost
            return sum(p.numel() for p in build_model(name, preset).parameters())
    moe, ent = count("posemoe"), count("entangled")
    assert abs(ent / moe - 1) < 0.05, (preset, moe, ent)
    assert build_model("entangled", preset).config.num_frames == build_model("posemoe", preset).config.num_frames


def test_presets_cover_the_windows_and_overrides_apply():
    for name in MODEL_NAMES:
        frames = {p: PRESETS[name][p]["num_frames"] for p in ("s", "b", "l")}
        assert frames == {"s": 27, "b": 81, "l": 243}
    assert build_model("posemoe", "b", dim=32, heads=2).config.dim == 32
    with pytest.raises(ValueError, match="unknown config field"):
        build_model("posemoe", "s", width=3)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("mlp")
    assert sum(p.numel() for p in build_model("posemoe", "s").parameters()) < 1.5e6


def test_scale_input_divides_out_each_frames_centre_and_size():
    from posemoe_ros.models.attention import scale_normalised
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 17, 3, generator=g) * 0.2
    x[..., 2] = (torch.rand(2, 5, 17, generator=g) > 0.3).float()
    x[..., :2] *= x[..., 2:3]                        # missing joints arrive at 0, as the node sends them
    moved = x.clone()
    factor = torch.tensor([0.2, 0.5, 1.0, 3.0, 5.0])[None, :, None, None]   # 1.5 m ... 8 m away, per frame
    moved[..., :2] = (x[..., :2] * factor + torch.tensor([0.3, -0.1])) * x[..., 2:3]
    a, b = scale_normalised(x), scale_normalised(moved)
    torch.testing.assert_close(a[..., :3], b[..., :3], rtol=0, atol=1e-5)      # same pose, same size
    torch.testing.assert_close(b[..., 5] - a[..., 5], factor[..., 0].log().expand(2, 5, 17), rtol=0, atol=1e-5)
    assert (a[..., :2][x[..., 2] == 0] == 0).all()                           # missing joints stay 0
    model = build_model("posemoe", "s", num_frames=9, dim=16, heads=2, scale_input=True)
    assert model.embed.proj.in_features == 6 and model(x).shape == (2, 5, 17, 3)
