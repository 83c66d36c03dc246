"""vqcpc.export."""
