"""The one table of ONNX graph and tensor names, used by the exporter and the runtime alike."""
from __future__ import annotations

ENCODER_FILE = "encoder.onnx"
MEMORY_FILE = "code_memory.onnx"
STEP_FILE = "decoder_step.onnx"
MANIFEST = "model.json"
FORMAT_VERSION = 2  # 2: one ring/cross input a layer (1 had stacked rings, split in the graph)

# encoder.onnx: bar tokens -> codes (the quantizer's argmax inside the graph)
ENCODER_INPUTS = ("beats",)  # (N, 16) int64
ENCODER_OUTPUTS = ("codes",)  # (N,) int64

# code_memory.onnx: a fixed window of codes -> cross-attention keys/values of every position
MEMORY_INPUTS = ("codes", "code_beat", "beats_per_bar")  # (B, Nc) int64, (B, Nc) int64, (B,) int64
MEMORY_OUTPUTS = ("cross_key", "cross_value")  # (L, B, H, Nc, dh) float

# decoder_step.onnx: one token; the ring is an input, only the new step's keys/values come out.
# The rings come one input a layer: ring_key_0 .. ring_key_{L-1}, each (B, H, S, dh) float, and
# likewise ring_value_i, cross_key_i (B, H, C, dh), cross_value_i. A stacked (L, ...) input would
# be split into per-layer copies inside the graph: the whole ring copied at every step.
STEP_OUTPUTS = ("logits", "new_key", "new_value")  # (B, V), (L, B, H, 1, dh), (L, B, H, 1, dh)
PER_LAYER = ("ring_key", "ring_value", "cross_key", "cross_value")


def step_inputs(layers: int) -> tuple[str, ...]:
    """token, position, ring_key_0.., ring_value_0.., ring_position, cross_key_0.., cross_value_0..,
    code_beat, beats_per_bar."""
    def each(name):
        return tuple(f"{name}_{i}" for i in range(layers))
    return ("token", "position", *each("ring_key"), *each("ring_value"), "ring_position",
            *each("cross_key"), *each("cross_value"), "code_beat", "beats_per_bar")


def flatten_step(tok, pos, ring_k, ring_v, ring_pos, cross_k, cross_v, code_beat, bpb) -> list:
    """The step's arguments with the stacked (L, ...) tensors split per layer, in step_inputs order."""
    return [tok, pos, *ring_k, *ring_v, ring_pos, *cross_k, *cross_v, code_beat, bpb]


def unflatten_step(flat, layers: int) -> tuple:
    """flatten_step's inverse, with per-layer sequences in place of the stacked tensors."""
    L = layers
    return (flat[0], flat[1], flat[2:2 + L], flat[2 + L:2 + 2 * L], flat[2 + 2 * L],
            flat[3 + 2 * L:3 + 3 * L], flat[3 + 3 * L:3 + 4 * L], flat[3 + 4 * L], flat[4 + 4 * L])

FP32_TOLERANCE = 1e-4  # max |ONNX fp32 - torch fp32| on logits and keys/values
VARIANT_TOLERANCE = {"int8": 0.5, "fp16": 0.05}  # max |logit difference| of the optional variants
VARIANT_TOP1 = 0.99  # top-1 agreement of a variant with fp32


def variant_file(base: str, variant: str | None) -> str:
    """decoder_step.onnx -> decoder_step.int8.onnx"""
    return base if not variant else base.replace(".onnx", f".{variant}.onnx")


# The step graph again with every shape fixed at batch 1 (the live daemon's and `vary`'s case): the
# exporter's shape arithmetic for a dynamic batch (Shape/Gather/Unsqueeze/Concat chains, 849 nodes in
# all) folds away (492 nodes) and a step takes ~16 % less time. Optional: a model without it uses the
# dynamic graph for every batch.
STEP_B1_FILE = variant_file(STEP_FILE, "b1")
