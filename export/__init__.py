"""vqcpc.export: torch -> ONNX (`vqcpc-export`, torch at export time only) and the onnxruntime engine
(`vqcpc.export.runtime`, never torch)."""
__all__: list[str] = []
