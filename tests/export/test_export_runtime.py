import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from vqcpc.export import names as N
from vqcpc.export.runtime import Engine
from vqcpc.music.errors import ModelError
from vqcpc.music.io import load


def test_manifest_and_checks(tiny_model):
    out, _, _ = tiny_model
    m = json.loads((out / N.MANIFEST).read_text())
    assert m["format_version"] == N.FORMAT_VERSION and m["codebook_size"] == 16
    assert set(m["sha256"]) >= {N.ENCODER_FILE, N.MEMORY_FILE, N.STEP_FILE, N.STEP_B1_FILE}
    assert m["checks"]["fp32"]["4/4_max_abs_diff"] <= N.FP32_TOLERANCE
    assert m["checks"]["fp32"]["3/4_batch1_max_abs_diff"] <= N.FP32_TOLERANCE
    assert m["training"]["encoder"]["command"] == "test" and m["meters"] == ["4/4", "3/4"]


def test_encoder_codes_identical_to_torch(tiny_model):
    from vqcpc.models.train_encoder import load_encoder

    out, _, _ = tiny_model
    enc, _ = load_encoder(out)
    beats = load("bwv269").beat_tokens().astype(np.int64)
    assert np.array_equal(Engine(out).encode(beats), enc.codes(torch.as_tensor(beats)).numpy())


@pytest.mark.parametrize("bpb", [4, 3])
def test_onnx_stream_equals_torch_stream_past_the_wrap(tiny_model, bpb):
    """Step by step, teacher-forced: ORT fp32 logits within 1e-4 of torch fp32, ring wrapped twice."""
    from vqcpc.models.stream import TorchStream
    from vqcpc.models.train_decoder import load_decoder

    out, _, _ = tiny_model
    dec, _ = load_decoder(out)
    W = dec.cfg.window
    bars = 2 * W // (16 * bpb) + 3
    rng = np.random.default_rng(bpb)
    toks = rng.integers(0, 130, (2, bars * bpb * 16))
    codes = rng.integers(0, 16, (2, bars * bpb))
    engine = Engine(out)
    ts, os_, one = TorchStream(dec, bpb, batch=2), engine.new_stream(bpb, 2), engine.new_stream(bpb, 1)
    assert os_.session is engine.step_session and one.session is engine.step_b1  # batch 1: the fixed-shape graph
    worst = 0.0
    for b in range(bars):
        ts.push_codes(torch.as_tensor(codes[:, b * bpb:(b + 1) * bpb]))
        os_.push_codes(codes[:, b * bpb:(b + 1) * bpb])
        one.push_codes(codes[:1, b * bpb:(b + 1) * bpb])
        for p in range(b * bpb * 16, (b + 1) * bpb * 16):
            tok = None if p == 0 else toks[:, p - 1]
            a = ts.step(None if tok is None else torch.as_tensor(tok)).numpy()
            o = os_.step(tok)
            o1 = one.step(None if tok is None else tok[:1])
            assert np.isfinite(a).all() and np.isfinite(o).all() and np.isfinite(o1).all()
            worst = max(worst, float(np.abs(a - o).max()), float(np.abs(a[:1] - o1).max()))
    assert os_.pos > 2 * W and one.pos == os_.pos
    assert worst <= N.FP32_TOLERANCE


def test_same_seed_same_variation_in_both_backends(tiny_model):
    from vqcpc.models.generate import TorchBackend, generate, template_codes

    out, _, _ = tiny_model
    e, t = Engine(out), TorchBackend(out)
    g = load("bwv269")
    codes = template_codes(e, g)
    assert np.array_equal(codes, template_codes(t, g))
    a = generate(e, g, codes, n=2, seed=7)
    b = generate(t, g, codes, n=2, seed=7)
    for x, y in zip(a, b):
        assert np.array_equal(x.grid.tokens, y.grid.tokens)


def test_tampered_or_truncated_file_is_a_clear_error(tiny_model, tmp_path):
    out, _, _ = tiny_model
    copy = tmp_path / "m"
    shutil.copytree(out, copy)
    data = (copy / N.STEP_FILE).read_bytes()
    (copy / N.STEP_FILE).write_bytes(data[:-10])
    with pytest.raises(ModelError, match="sha256"):
        Engine(copy)
    (copy / N.STEP_FILE).unlink()
    with pytest.raises(ModelError, match="missing"):
        Engine(copy)
    (copy / N.MANIFEST).unlink()
    with pytest.raises(ModelError, match="vqcpc-export"):
        Engine(copy)


def test_cuda_without_provider_is_a_clear_error(tiny_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA onnxruntime")
    out, _, _ = tiny_model
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        Engine(out, device="cuda")
    assert Engine(out, device="auto").device == "cpu"


def test_runtime_path_never_imports_torch(tiny_model, tmp_path):
    """The engine, generation and the vary command work where `import torch` fails."""
    out, _, _ = tiny_model
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "torch.py").write_text("raise ImportError('torch is blocked in this test')\n")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(blocker)!r})
        from vqcpc.export.runtime import Engine
        from vqcpc.models.generate import generate, template_codes
        from vqcpc.music.io import load
        e = Engine({str(out)!r})
        g = load("bwv269")
        v = generate(e, g, template_codes(e, g), n=1, seed=0)
        import vqcpc.daemon.cli, vqcpc.daemon.core, vqcpc.daemon.demo
        from vqcpc.cli import main
        main(["vary", "bwv269", "-n", "1", "-o", {str(tmp_path / "o")!r}, "--model", {str(out)!r}], standalone_mode=False)
        assert "torch" not in sys.modules or getattr(sys.modules["torch"], "__file__", "").startswith({str(blocker)!r})
        print("ok", v[0].grid.ticks)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1].startswith("ok")


def test_export_refuses_to_overwrite(tiny_model, tmp_path):
    from vqcpc.export.onnx_export import export_model

    out, _, _ = tiny_model
    with pytest.raises(ModelError, match="already exists"):
        export_model(out)
    m = export_model(out, tmp_path / "copy")
    assert (tmp_path / "copy" / N.STEP_FILE).exists() and m["checks"]["fp32"]["3/4_max_abs_diff"] <= N.FP32_TOLERANCE
    Engine(tmp_path / "copy")


def test_variant_check_passes_a_faithful_graph_and_fails_a_wrong_one(tiny_model, tmp_path):
    """The int8/fp16 guard: a graph equal to fp32 passes; another model's graph fails loudly.
    (The tiny model's logits are too flat for a meaningful int8 top-1 figure; the shipped models'
    int8 figures are in their manifests.)"""
    from vqcpc.export.onnx_export import check_variant
    from vqcpc.models.decoder import CodeDecoder
    from vqcpc.models.train_decoder import load_decoder

    out, _, _ = tiny_model
    dec, _ = load_decoder(out)
    shutil.copy(out / N.STEP_FILE, tmp_path / "decoder_step.int8.onnx")
    res = check_variant(tmp_path, dec, "int8")
    assert res["top1_agreement"] == 1.0 and res["max_abs_diff"] < 1e-4
    other = CodeDecoder(dec.cfg).eval()
    with pytest.raises(ModelError, match="int8 step graph off"):
        check_variant(tmp_path, other, "int8")


def test_a_model_without_the_batch1_graph_uses_the_dynamic_one(tiny_model, tmp_path):
    out, _, _ = tiny_model
    old = tmp_path / "old"
    shutil.copytree(out, old)
    (old / N.STEP_B1_FILE).unlink()
    m = json.loads((old / N.MANIFEST).read_text())
    del m["sha256"][N.STEP_B1_FILE]
    (old / N.MANIFEST).write_text(json.dumps(m))
    engine = Engine(old)
    s = engine.new_stream(4, 1)
    assert engine.step_b1 is None and s.session is engine.step_session
    s.push_codes(np.array([[1, 2, 3, 4]]))
    assert np.isfinite(s.step()).all()
