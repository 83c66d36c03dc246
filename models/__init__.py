"""vqcpc.models: the VQ-CPC encoder and the decoder (torch), their training, sampling and the shipped
models. Importing this package imports no torch: the daemon reads the shipped files from here."""
__all__: list[str] = []
