"""vqcpc.daemon."""
