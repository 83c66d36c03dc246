"""vqcpc: Bach-style four-voice variations of a template, from VQ-CPC codes, in real time."""
__version__ = "0.1.0"
