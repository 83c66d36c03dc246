"""torch -> ONNX: the encoder, the code-memory graph and the one-token decoder step, then a parity
check of what was written against torch (DESIGN §5). Imports torch: export time only."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from vqcpc.music.errors import ModelError
from vqcpc.music.grid import METERS, VOICES, load_ranges, vocabulary

from . import names as N
from .runtime import file_sha256 as sha256

log = logging.getLogger(__name__)
OPSET = 17


class EncoderGraph(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, beats):
        return self.encoder.vq.codes(self.encoder.beat(beats))


class MemoryGraph(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, codes, code_beat, beats_per_bar):
        kv = self.decoder.cross_kv(self.decoder.memory(codes, code_beat, beats_per_bar))
        return torch.stack([k for k, _ in kv]), torch.stack([v for _, v in kv])


class StepGraph(nn.Module):
    """The decoder's step with one input a layer for the rings (names.step_inputs order)."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, *flat):
        return self.decoder.step(*N.unflatten_step(flat, self.decoder.cfg.layers))


def step_feed(decoder, step) -> dict:
    """example_inputs' step tuple -> the ONNX step graph's feed (numpy, one ring input a layer)."""
    return dict(zip(N.step_inputs(decoder.cfg.layers), map(_np, N.flatten_step(*step))))


def example_inputs(decoder, batch: int = 2, bpb: int = 4, seed: int = 0, dtype=torch.float32):
    """Random but well-formed inputs for the memory and step graphs (positions past a ring wrap)."""
    g = torch.Generator().manual_seed(seed)
    cfg = decoder.cfg
    L, H, dh, S, C = cfg.layers, cfg.heads, cfg.d_model // cfg.heads, cfg.window - 1, cfg.code_slots
    nbars = cfg.window // (16 * bpb)
    n_mem = (cfg.code_layers * (nbars - 1) + 1) * bpb
    first = 3 * bpb
    mem = (torch.randint(0, cfg.codes, (batch, n_mem), generator=g),
           torch.arange(first, first + n_mem).expand(batch, -1).contiguous(),
           torch.full((batch,), bpb, dtype=torch.long))
    pos = 3 * cfg.window + 37
    ring_pos = torch.tensor([p for p in range(pos - S, pos)])  # the last W - 1 positions
    ring_pos = ring_pos[torch.remainder(torch.arange(S) - pos, S)]  # in ring-slot order
    ring_pos = ring_pos.expand(batch, -1).clone()
    ring_pos[1:, : S // 3] = -1  # some empty slots in the other streams
    last = (pos // (16 * bpb) + 1) * bpb - 1  # the last beat of the current bar
    code_beat = torch.tensor([last - ((last - c) % C) for c in range(C)])  # newest beat in each slot
    step = (torch.randint(0, cfg.vocab_size + 1, (batch,), generator=g), torch.full((batch,), pos),
            torch.randn(L, batch, H, S, dh, generator=g, dtype=dtype), torch.randn(L, batch, H, S, dh, generator=g, dtype=dtype),
            ring_pos, torch.randn(L, batch, H, C, dh, generator=g, dtype=dtype),
            torch.randn(L, batch, H, C, dh, generator=g, dtype=dtype), code_beat.expand(batch, -1).contiguous(),
            torch.full((batch,), bpb, dtype=torch.long))
    beats = torch.randint(0, cfg.vocab_size, (5, 16), generator=g)
    return beats, mem, step


def _export(module, args, path: Path, inputs, outputs, dynamic):
    module.eval()  # a fresh wrapper is in training mode, and export restores that mode on its children
    torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=list(outputs),
                      dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, do_constant_folding=True)


def export_model(model_dir: Path, out_dir: Path | None = None, *, int8: bool = False, fp16: bool = False,
                 force: bool = False) -> dict:
    """Write the ONNX graphs and model.json for a trained model directory, then check them."""
    from vqcpc.models.train_decoder import DECODER_JSON, load_decoder
    from vqcpc.models.train_encoder import ENCODER_JSON, load_encoder

    model_dir = Path(model_dir)
    out_dir = Path(out_dir) if out_dir else model_dir
    if not (model_dir / ENCODER_JSON).exists():
        raise ModelError(f"{model_dir}: no {ENCODER_JSON}; train the model first")
    if not (model_dir / DECODER_JSON).exists():
        if int8 or fp16:
            raise ModelError(f"{model_dir}: no {DECODER_JSON}: an encoder alone has no step graph to quantize")
        return export_encoder(model_dir, out_dir, force=force)
    targets = [N.ENCODER_FILE, N.MEMORY_FILE, N.STEP_FILE, N.STEP_B1_FILE, N.MANIFEST]
    targets += [N.variant_file(N.STEP_FILE, "int8")] if int8 else []
    targets += [N.variant_file(N.STEP_FILE, "fp16")] if fp16 else []
    clash = [t for t in targets if (out_dir / t).exists()]
    if clash and not force:
        raise ModelError(f"{out_dir / clash[0]}: already exists (use --force to overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, enc_meta = load_encoder(model_dir)
    decoder, dec_meta = load_decoder(model_dir)
    beats, mem, step = example_inputs(decoder)
    _export(EncoderGraph(encoder), (beats,), out_dir / N.ENCODER_FILE, N.ENCODER_INPUTS, N.ENCODER_OUTPUTS,
            {"beats": {0: "n"}, "codes": {0: "n"}})
    _export(MemoryGraph(decoder), mem, out_dir / N.MEMORY_FILE, N.MEMORY_INPUTS, N.MEMORY_OUTPUTS,
            {"codes": {0: "batch", 1: "n"}, "code_beat": {0: "batch", 1: "n"}, "beats_per_bar": {0: "batch"},
             "cross_key": {1: "batch", 3: "n"}, "cross_value": {1: "batch", 3: "n"}})
    step_names = N.step_inputs(decoder.cfg.layers)
    batch_axes = {name: {0: "batch"} for name in step_names}
    batch_axes.update({"logits": {0: "batch"}, "new_key": {1: "batch"}, "new_value": {1: "batch"}})
    _export(StepGraph(decoder), tuple(N.flatten_step(*step)), out_dir / N.STEP_FILE, step_names, N.STEP_OUTPUTS,
            batch_axes)
    step1 = example_inputs(decoder, batch=1)[2]
    _export(StepGraph(decoder), tuple(N.flatten_step(*step1)), out_dir / N.STEP_B1_FILE, step_names, N.STEP_OUTPUTS,
            None)  # every shape fixed: see names.STEP_B1_FILE
    encoder.eval(), decoder.eval()
    checks = {"fp32": check_fp32(out_dir, encoder, decoder)}
    files = [N.ENCODER_FILE, N.MEMORY_FILE, N.STEP_FILE, N.STEP_B1_FILE]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = out_dir / N.variant_file(N.STEP_FILE, "int8")
        quantize_dynamic(str(out_dir / N.STEP_FILE), str(q), weight_type=QuantType.QInt8)
        checks["int8"] = check_variant(out_dir, decoder, "int8")
        files.append(q.name)
    if fp16:
        checks["fp16"] = _fp16(out_dir, decoder)
        files.append(N.variant_file(N.STEP_FILE, "fp16"))
    for src in ("encoder.safetensors", "decoder.safetensors", ENCODER_JSON, DECODER_JSON):
        if out_dir != model_dir:
            shutil.copy2(model_dir / src, out_dir / src)
    files += ["encoder.safetensors", "decoder.safetensors"]
    cfg = decoder.cfg
    manifest = {
        "format_version": N.FORMAT_VERSION,
        "name": model_dir.name,
        "negatives": enc_meta["config"]["negatives"],
        "vocabulary": vocabulary(),
        "start_token": decoder.start_token,
        "voices": list(VOICES),
        "voice_ranges": {v: list(r) for v, r in zip(VOICES, load_ranges())},
        "meters": [f"{m}/4" for m in METERS],
        "codebook_size": enc_meta["config"]["codes"],
        "window_tokens": cfg.window,
        "ring_slots": cfg.window - 1,
        "code_slots": cfg.code_slots,
        "code_layers": cfg.code_layers,
        "layers": cfg.layers,
        "heads": cfg.heads,
        "head_dim": cfg.d_model // cfg.heads,
        "inputs": {"encoder": N.ENCODER_INPUTS, "memory": N.MEMORY_INPUTS, "step": step_names},
        "outputs": {"encoder": N.ENCODER_OUTPUTS, "memory": N.MEMORY_OUTPUTS, "step": N.STEP_OUTPUTS},
        "tolerances": {"fp32": N.FP32_TOLERANCE, **{k: v for k, v in N.VARIANT_TOLERANCE.items() if k in checks},
                       "variant_top1": N.VARIANT_TOP1},
        "checks": checks,
        "sha256": {f: sha256(out_dir / f) for f in files},
        "training": {"encoder": {"command": enc_meta.get("command"), "metrics": enc_meta.get("metrics")},
                     "decoder": {"command": dec_meta.get("command"), "metrics": dec_meta.get("metrics"),
                                 "parameters": dec_meta.get("parameters")}},
    }
    (out_dir / N.MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def export_encoder(model_dir: Path, out_dir: Path, *, force: bool = False) -> dict:
    """An encoder-only directory (e.g. a grader encoder) -> encoder.onnx and an encoder manifest."""
    from vqcpc.models.train_encoder import ENCODER_JSON, load_encoder

    for t in (N.ENCODER_FILE, N.MANIFEST):
        if (out_dir / t).exists() and not force:
            raise ModelError(f"{out_dir / t}: already exists (use --force to overwrite)")
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, meta = load_encoder(model_dir)
    encoder.eval()
    beats = torch.randint(0, 130, (64, 16), generator=torch.Generator().manual_seed(0))
    _export(EncoderGraph(encoder), (beats,), out_dir / N.ENCODER_FILE, N.ENCODER_INPUTS, N.ENCODER_OUTPUTS,
            {"beats": {0: "n"}, "codes": {0: "n"}})
    with torch.no_grad():
        same = np.array_equal(_session(out_dir / N.ENCODER_FILE).run(None, {"beats": _np(beats)})[0],
                              _np(EncoderGraph(encoder)(beats)))
    if not same:
        raise ModelError("export check: encoder.onnx codes differ from torch")
    for src in ("encoder.safetensors", ENCODER_JSON):
        if out_dir != model_dir:
            shutil.copy2(model_dir / src, out_dir / src)
    files = [N.ENCODER_FILE, "encoder.safetensors"]
    manifest = {
        "format_version": N.FORMAT_VERSION,
        "kind": "encoder",
        "name": model_dir.name,
        "negatives": meta["config"]["negatives"],
        "seed": meta.get("train", {}).get("seed"),
        "vocabulary": vocabulary(),
        "voice_ranges": {v: list(r) for v, r in zip(VOICES, load_ranges())},
        "codebook_size": meta["config"]["codes"],
        "inputs": {"encoder": N.ENCODER_INPUTS},
        "outputs": {"encoder": N.ENCODER_OUTPUTS},
        "checks": {"encoder_codes_equal": True},
        "sha256": {f: sha256(out_dir / f) for f in files},
        "training": {"encoder": {"command": meta.get("command"), "metrics": meta.get("metrics")}},
    }
    (out_dir / N.MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _np(t):
    return t.detach().cpu().numpy()


def _finite(name, *arrays):
    for a in arrays:
        if not np.isfinite(a).all():
            raise ModelError(f"export check: {name} produced non-finite values")


@torch.no_grad()
def check_fp32(out_dir: Path, encoder, decoder) -> dict:
    """ONNX fp32 vs torch fp32 on random inputs: finite first, then max |diff| <= FP32_TOLERANCE."""
    result = {}
    for bpb in (4, 3):
        beats, mem, step = example_inputs(decoder, batch=3, bpb=bpb, seed=bpb)
        enc = _session(out_dir / N.ENCODER_FILE).run(None, {"beats": _np(beats)})[0]
        if not np.array_equal(enc, _np(EncoderGraph(encoder)(beats))):
            raise ModelError("export check: encoder.onnx codes differ from torch")
        m_onnx = _session(out_dir / N.MEMORY_FILE).run(None, dict(zip(N.MEMORY_INPUTS, map(_np, mem))))
        m_torch = [_np(x) for x in MemoryGraph(decoder)(*mem)]
        s_onnx = _session(out_dir / N.STEP_FILE).run(None, step_feed(decoder, step))
        s_torch = [_np(x) for x in decoder.step(*step)]
        _finite("ONNX", *m_onnx, *s_onnx)
        _finite("torch", *m_torch, *s_torch)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(m_onnx + s_onnx, m_torch + s_torch))
        if diff > N.FP32_TOLERANCE:
            raise ModelError(f"export check: ONNX fp32 differs from torch by {diff:.2e} (> {N.FP32_TOLERANCE})")
        result[f"{bpb}/4_max_abs_diff"] = diff
        step1 = example_inputs(decoder, batch=1, bpb=bpb, seed=10 + bpb)[2]
        b1 = _session(out_dir / N.STEP_B1_FILE).run(None, step_feed(decoder, step1))
        ref = [_np(x) for x in decoder.step(*step1)]
        _finite("ONNX batch 1", *b1)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(b1, ref))
        if diff > N.FP32_TOLERANCE:
            raise ModelError(f"export check: the batch-1 step graph differs from torch by {diff:.2e}")
        result[f"{bpb}/4_batch1_max_abs_diff"] = diff
    log.info("fp32 parity: %s", result)
    return result


@torch.no_grad()
def check_variant(out_dir: Path, decoder, variant: str, feeds=None) -> dict:
    """A reduced-precision step graph against torch fp32 on many random steps: tolerance + top-1."""
    sess = _session(out_dir / N.variant_file(N.STEP_FILE, variant))
    diffs, agree, total = [], 0, 0
    for seed in range(8):
        _, _, step = example_inputs(decoder, batch=8, bpb=4 if seed % 2 else 3, seed=100 + seed)
        ref = _np(decoder.step(*step)[0])
        feed = step_feed(decoder, step)
        if feeds:
            feed = feeds(feed)
        got = sess.run(None, feed)[0].astype(np.float32)
        _finite(variant, got)
        diffs.append(float(np.abs(got - ref).max()))
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        total += len(ref)
    res = {"max_abs_diff": max(diffs), "top1_agreement": agree / total}
    if res["max_abs_diff"] > N.VARIANT_TOLERANCE[variant] or res["top1_agreement"] < N.VARIANT_TOP1:
        raise ModelError(f"export check: {variant} step graph off: {res} (tolerance "
                         f"{N.VARIANT_TOLERANCE[variant]}, top-1 >= {N.VARIANT_TOP1})")
    log.info("%s parity: %s", variant, res)
    return res


def _fp16(out_dir: Path, decoder) -> dict:
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise ModelError("--fp16 needs the onnxconverter-common package (pip install onnxconverter-common)") from None
    import onnx

    m = float16.convert_float_to_float16(onnx.load(str(out_dir / N.STEP_FILE)), keep_io_types=True)
    onnx.save(m, str(out_dir / N.variant_file(N.STEP_FILE, "fp16")))
    return check_variant(out_dir, decoder, "fp16")
