"""vqcpc.models."""
