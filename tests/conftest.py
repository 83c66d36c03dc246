"""Shared fixtures: a tiny model trained in seconds on a few chorales (never a shipped model)."""
from __future__ import annotations

import numpy as np
import pytest



@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A folder of a dozen real chorales as MIDI files (the --data path of training)."""
    from vqcpc.music.corpus import corpus_split
    from vqcpc.music.midi import write_midi

    folder = tmp_path_factory.mktemp("tiny-data")
    chorales = [c for c in corpus_split("train") if c.grid.beats_per_bar == 4][:16]
    for c in chorales:
        write_midi(c.grid, folder / f"{c.name}.mid")
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_data):
    """A tiny encoder + decoder trained on ``tiny_data`` (seconds), as a model directory."""
    import torch

    from vqcpc.models.config import EncoderConfig, EncoderTrainConfig
    from vqcpc.models.decoder import DecoderConfig
    from vqcpc.models.train_decoder import DecoderTrainConfig, train_decoder
    from vqcpc.models.train_encoder import train_encoder

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-model")
    enc = train_encoder(out, EncoderConfig(d_embed=16, d_gru=32, d_latent=8, d_z=32, d_context=32, dropout=0.0),
                        EncoderTrainConfig(epochs=3, steps_per_epoch=30, batch_size=32, restart_every=25, val_windows=256, threads=1,
                                           data=str(tiny_data)), progress=False, command="test")
    dec = train_decoder(out, DecoderConfig(d_model=32, heads=2, layers=1, d_ff=64, window=128, dropout=0.0),
                        DecoderTrainConfig(epochs=2, steps_per_epoch=15, batch_size=4, warmup=5, threads=1,
                                           data=str(tiny_data)), progress=False, command="test")
    from vqcpc.export.onnx_export import export_model

    export_model(out)
    return out, enc, dec


@pytest.fixture(scope="session")
def tiny_grader(tmp_path_factory, tiny_data):
    """A second tiny encoder of the same kind, another seed, exported alone: a grader."""
    from vqcpc.export.onnx_export import export_model
    from vqcpc.models.config import EncoderConfig, EncoderTrainConfig
    from vqcpc.models.train_encoder import train_encoder

    out = tmp_path_factory.mktemp("tiny-grader")
    train_encoder(out, EncoderConfig(d_embed=16, d_gru=32, d_latent=8, d_z=32, d_context=32, dropout=0.0),
                  EncoderTrainConfig(epochs=2, steps_per_epoch=20, batch_size=32, restart_every=25, val_windows=256,
                                     threads=1, seed=1, data=str(tiny_data)), progress=False, command="test grader")
    export_model(out)
    return out
