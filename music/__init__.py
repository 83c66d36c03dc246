"""The four-voice representation shared by every part of vqcpc (torch-free)."""
from .errors import InputError, ModelError, VqcpcError
from .grid import (HOLD, N_VOICES, REST, TICKS_PER_BEAT, TOKENS_PER_BEAT, VOCAB_SIZE, VOICES, Grid,
                   Report, load_ranges, pitch_token, token_pitch)
from .io import load, save

__all__ = ["Grid", "Report", "VOICES", "N_VOICES", "REST", "HOLD", "TICKS_PER_BEAT", "TOKENS_PER_BEAT",
           "VOCAB_SIZE", "pitch_token", "token_pitch", "load_ranges", "load", "save",
           "VqcpcError", "InputError", "ModelError"]
