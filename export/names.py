"""The one table of ONNX graph and tensor names, used by the exporter and the runtime alike."""
from __future__ import annotations

ENCODER_FILE = "encoder.onnx"
MEMORY_FILE = "code_memory.onnx"
STEP_FILE = "decoder_step.onnx"
MANIFEST = "model.json"
FORMAT_VERSION = 1

# encoder.onnx: bar tokens -> codes (the quantizer's argmax inside the graph)
ENCODER_INPUTS = ("beats",)  # (N, 16) int64
ENCODER_OUTPUTS = ("codes",)  # (N,) int64

# code_memory.onnx: a fixed window of codes -> cross-attention keys/values of every position
MEMORY_INPUTS = ("codes", "code_beat", "beats_per_bar")  # (B, Nc) int64, (B, Nc) int64, (B,) int64
MEMORY_OUTPUTS = ("cross_key", "cross_value")  # (L, B, H, Nc, dh) float

# decoder_step.onnx: one token; the ring is an input, only the new step's keys/values come out
STEP_INPUTS = ("token", "position", "ring_key", "ring_value", "ring_position",
               "cross_key", "cross_value", "code_beat", "beats_per_bar")
STEP_OUTPUTS = ("logits", "new_key", "new_value")  # (B, V), (L, B, H, 1, dh), (L, B, H, 1, dh)

FP32_TOLERANCE = 1e-4  # max |ONNX fp32 - torch fp32| on logits and keys/values
VARIANT_TOLERANCE = {"int8": 0.5, "fp16": 0.05}  # max |logit difference| of the optional variants
VARIANT_TOP1 = 0.99  # top-1 agreement of a variant with fp32


def variant_file(base: str, variant: str | None) -> str:
    """decoder_step.onnx -> decoder_step.int8.onnx"""
    return base if not variant else base.replace(".onnx", f".{variant}.onnx")
