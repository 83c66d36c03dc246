"""The runtime engine: onnxruntime and numpy only, never torch (DESIGN §5).

``Engine(model_dir)`` verifies the manifest's sha256 of every file, opens the three graphs and
serves ``encode`` (beats -> codes) and ``new_stream`` (bar codes in, one token's logits out per
step, with the fixed-size ring caches kept on the host). It is a backend of
``vqcpc.models.generate.generate`` exactly as the torch one is.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from vqcpc.music.errors import ModelError
from vqcpc.music.grid import N_VOICES, TOKENS_PER_BEAT, VOICES, voice_token_mask

from . import names as N

log = logging.getLogger(__name__)


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("onnxruntime is not installed: pip install 'vqcpc[cpu]' (or 'vqcpc[gpu]' for CUDA)") from None
    return ort


def providers_for(device: str) -> list[str]:
    """'cpu' | 'cuda' | 'auto' -> execution providers; a clear error where CUDA cannot be used."""
    ort = _ort()
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "auto":
        return ["CPUExecutionProvider"]
    raise ModelError("--device cuda: this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu "
                     "instead of onnxruntime: pip uninstall onnxruntime && pip install 'vqcpc[gpu]')")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(model_dir: Path) -> dict:
    path = Path(model_dir) / N.MANIFEST
    if not path.exists():
        if not (Path(model_dir) / "encoder.json").exists():
            raise ModelError(f"{model_dir}: not a model directory (no {N.MANIFEST}, no encoder.json)")
        raise ModelError(f"{model_dir}: no {N.MANIFEST}; export the model first: vqcpc-export {model_dir}")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"{path}: unreadable manifest ({err})") from None
    if manifest.get("format_version") != N.FORMAT_VERSION:
        raise ModelError(f"{path}: format version {manifest.get('format_version')}, this vqcpc reads "
                         f"{N.FORMAT_VERSION}: re-export it (vqcpc-export {model_dir} --force)")
    return manifest


def _verify(model_dir: Path, manifest: dict, files) -> None:
    for f in files:
        expected = manifest["sha256"].get(f)
        if expected is None:
            raise ModelError(f"{model_dir}: {f} is not in the manifest (export it with vqcpc-export)")
        if not (model_dir / f).exists():
            raise ModelError(f"{model_dir / f}: missing")
        if file_sha256(model_dir / f) != expected:
            raise ModelError(f"{model_dir / f}: sha256 differs from the manifest (file damaged or replaced)")


class EncoderEngine:
    """encoder.onnx alone: beats -> codes. A full model's encoder, or a grader encoder (a directory
    exported from an encoder-only training, manifest kind "encoder")."""

    def __init__(self, model_dir, device: str = "cpu", threads: int = 1):
        ort = _ort()
        self.dir = Path(model_dir)
        self.manifest = m = read_manifest(self.dir)
        _verify(self.dir, m, [N.ENCODER_FILE])
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.options = so
        self.providers = providers_for(device)
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.encoder = self._session(N.ENCODER_FILE)
        self.ranges = [tuple(m["voice_ranges"][v]) for v in VOICES]
        self.voice_mask = voice_token_mask(self.ranges)
        self.n_codes = m["codebook_size"]

    def _session(self, file: str):
        try:
            return _ort().InferenceSession(str(self.dir / file), self.options, providers=self.providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelError(f"{self.dir}: onnxruntime cannot load {file} ({err})") from err

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.dir.name)

    def encode(self, beats: np.ndarray) -> np.ndarray:
        """(N, 16) token ids -> (N,) codes."""
        beats = np.ascontiguousarray(beats, dtype=np.int64)
        if beats.shape[0] == 0:
            return np.zeros(0, np.int64)
        return self.encoder.run(None, {"beats": beats})[0]


class Engine(EncoderEngine):
    """Encoder, code memory and step graphs of an exported model: encodes and generates."""

    def __init__(self, model_dir, device: str = "cpu", threads: int = 1, variant: str | None = None):
        super().__init__(model_dir, device, threads)
        m = self.manifest
        if m.get("kind") == "encoder":
            raise ModelError(f"{self.dir}: an encoder alone (no decoder); it can grade, not generate")
        step_file = N.variant_file(N.STEP_FILE, variant)
        # batch 1 on the fixed-shape graph where the model has one (fp32 only): see names.STEP_B1_FILE
        b1 = variant is None and N.STEP_B1_FILE in m.get("sha256", {})
        _verify(self.dir, m, [N.MEMORY_FILE, step_file] + ([N.STEP_B1_FILE] if b1 else []))
        self.memory = self._session(N.MEMORY_FILE)
        self.step_session = self._session(step_file)
        self.step_b1 = self._session(N.STEP_B1_FILE) if b1 else None
        self.start_token = m["start_token"]

    def new_stream(self, beats_per_bar: int, batch: int = 1) -> "OrtStream":
        return OrtStream(self, beats_per_bar, batch)


class OrtStream:
    """B streams, one token a step; the host owns the rings and writes one slot per step."""

    def __init__(self, engine: Engine, beats_per_bar: int, batch: int):
        m = engine.manifest
        self.e, self.bpb, self.B = engine, beats_per_bar, batch
        self.session = engine.step_b1 if batch == 1 and engine.step_b1 is not None else engine.step_session
        L, H, dh = m["layers"], m["heads"], m["head_dim"]
        self.S, self.C = m["ring_slots"], m["code_slots"]
        nbars = m["window_tokens"] // (TOKENS_PER_BEAT * beats_per_bar)
        self.context_bars = m["code_layers"] * (nbars - 1) + 1
        # one array a layer (the graph's inputs are per layer: nothing is split or copied whole)
        self.ring_k = [np.zeros((batch, H, self.S, dh), np.float32) for _ in range(L)]
        self.ring_v = [np.zeros_like(a) for a in self.ring_k]
        self.ring_pos = np.full((batch, self.S), -1, np.int64)
        self.cross_k = [np.zeros((batch, H, self.C, dh), np.float32) for _ in range(L)]
        self.cross_v = [np.zeros_like(a) for a in self.cross_k]
        self.code_beat = np.full((batch, self.C), -1, np.int64)
        self.input_names = N.step_inputs(L)
        self.bpb_arr = np.full((batch,), beats_per_bar, np.int64)
        self.codes: list[np.ndarray] = []
        self.bars = 0
        self.pos = 0
        self.prev = np.full((batch,), engine.start_token, np.int64)

    def push_codes(self, bar_codes: np.ndarray) -> None:
        """The next bar's codes (B, bpb): its cross-attention keys/values, computed once."""
        m = self.bars
        self.codes = (self.codes + [np.asarray(bar_codes, np.int64).reshape(self.B, self.bpb)])[-self.context_bars:]
        self.bars += 1
        first = m + 1 - len(self.codes)
        codes = np.concatenate(self.codes, axis=1)
        beats = np.broadcast_to(np.arange(first * self.bpb, (m + 1) * self.bpb), codes.shape).copy()
        ck, cv = self.e.memory.run(None, {"codes": codes, "code_beat": beats, "beats_per_bar": self.bpb_arr})
        new = beats[0, -self.bpb:]
        slots = new % self.C
        for i in range(len(self.cross_k)):
            self.cross_k[i][:, :, slots] = ck[i, :, :, -self.bpb:]
            self.cross_v[i][:, :, slots] = cv[i, :, :, -self.bpb:]
        self.code_beat[:, slots] = new

    def step(self, tok_in: np.ndarray | None = None) -> np.ndarray:
        """Feed the previous token -> logits (B, V) of the token at ``self.pos``."""
        if tok_in is not None:
            self.prev = np.asarray(tok_in, np.int64).reshape(self.B)
        if self.pos // (TOKENS_PER_BEAT * self.bpb) >= self.bars:
            raise RuntimeError("the codes of this bar have not been pushed")
        flat = N.flatten_step(self.prev, np.full((self.B,), self.pos, np.int64), self.ring_k, self.ring_v,
                              self.ring_pos, self.cross_k, self.cross_v, self.code_beat, self.bpb_arr)
        logits, k1, v1 = self.session.run(None, dict(zip(self.input_names, flat)))
        slot = self.pos % self.S
        for i in range(len(self.ring_k)):
            self.ring_k[i][:, :, slot] = k1[i, :, :, 0]
            self.ring_v[i][:, :, slot] = v1[i, :, :, 0]
        self.ring_pos[:, slot] = self.pos
        self.pos += 1
        return logits

    def copy_rows(self, src: np.ndarray) -> None:
        """Row r takes row src[r]'s whole state (its past): a beat search keeps the chosen beat."""
        for a in (*self.ring_k, *self.ring_v, *self.cross_k, *self.cross_v):
            a[:] = a[src]
        for name in ("ring_pos", "code_beat", "prev"):
            setattr(self, name, getattr(self, name)[src].copy())
        self.codes = [c[src] for c in self.codes]

    @property
    def voice(self) -> int:
        return self.pos % N_VOICES
