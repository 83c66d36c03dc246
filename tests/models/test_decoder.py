import json

import numpy as np
import pytest
import torch

from vqcpc.models.decoder import CodeDecoder, DecoderConfig
from vqcpc.models.stream import TorchStream


def _random_stream(model, bpb, bars, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = bars * bpb * 16
    toks = torch.randint(0, model.cfg.vocab_size, (batch, T), generator=g)
    tok_in = torch.cat([torch.full((batch, 1), model.start_token), toks[:, :-1]], 1)
    codes = torch.randint(0, model.cfg.codes, (batch, bars * bpb), generator=g)
    return tok_in, codes


@pytest.mark.parametrize("bpb", [4, 3])
@pytest.mark.parametrize("code_layers", [1, 2])
def test_cached_stream_equals_full_forward_float64(bpb, code_layers):
    """Token by token with the ring caches == one full pass, past the ring's wrap-around."""
    torch.manual_seed(0)
    cfg = DecoderConfig(d_model=32, heads=2, layers=2, code_layers=code_layers, d_ff=64, window=128, dropout=0.0)
    model = CodeDecoder(cfg).double().eval()
    bars = 3 * cfg.window // (16 * bpb) + 2  # the token ring wraps more than twice, the code window too
    tok_in, codes = _random_stream(model, bpb, bars)
    T = tok_in.shape[1]
    assert T > 2 * cfg.window
    with torch.no_grad():
        full = model(tok_in, torch.arange(T).expand(2, -1), codes, torch.arange(codes.shape[1]).expand(2, -1),
                     torch.full((2,), bpb))
    stream = TorchStream(model, bpb, batch=2)
    steps = []
    for b in range(bars):
        stream.push_codes(codes[:, b * bpb:(b + 1) * bpb])
        for p in range(b * bpb * 16, (b + 1) * bpb * 16):
            steps.append(stream.step(tok_in[:, p]))
    inc = torch.stack(steps, 1)
    assert torch.isfinite(full).all() and torch.isfinite(inc).all()
    assert (inc - full).abs().max().item() <= 1e-9


def test_new_bar_never_changes_what_was_computed():
    """Bar-causal masks: logits of bar n do not depend on the codes of bar n + 1."""
    torch.manual_seed(1)
    cfg = DecoderConfig(d_model=32, heads=2, layers=2, d_ff=64, window=128, dropout=0.0)
    model = CodeDecoder(cfg).double().eval()
    tok_in, codes = _random_stream(model, 4, 6, batch=1)
    codes2 = codes.clone()
    codes2[:, 20:] = (codes2[:, 20:] + 1) % cfg.codes  # change bars 5 and 6
    args = (torch.arange(tok_in.shape[1])[None], )
    with torch.no_grad():
        a = model(tok_in, *args, codes, torch.arange(24)[None], torch.tensor([4]))
        b = model(tok_in, *args, codes2, torch.arange(24)[None], torch.tensor([4]))
    assert (a[:, : 5 * 64 - 64] - b[:, : 5 * 64 - 64]).abs().max() == 0  # bars 1..4 unchanged
    assert (a[:, 4 * 64:] - b[:, 4 * 64:]).abs().max() > 0  # bar 5 follows its new codes


def test_token_window_masks_the_distant_past():
    torch.manual_seed(2)
    cfg = DecoderConfig(d_model=32, heads=2, layers=1, d_ff=64, window=64, dropout=0.0)
    model = CodeDecoder(cfg).double().eval()
    tok_in, codes = _random_stream(model, 4, 4, batch=1)
    tok2 = tok_in.clone()
    tok2[:, 10] = (tok2[:, 10] + 1) % cfg.vocab_size
    pos, beats, bpb = torch.arange(256)[None], torch.arange(16)[None], torch.tensor([4])
    with torch.no_grad():
        a, b = model(tok_in, pos, codes, beats, bpb), model(tok2, pos, codes, beats, bpb)
    changed = (a - b).abs().amax(-1)[0] > 0
    assert not changed[:10].any() and changed[10] and not changed[10 + 64:].any()


def test_decoder_training_writes_metrics(tiny_model):
    out, _, meta = tiny_model
    saved = json.loads((out / "decoder.json").read_text())
    v = saved["metrics"]["validation"]
    assert np.isfinite(v["loss"]) and 0 <= v["token_accuracy"] <= 1
    assert saved["encoder"] == "uniform" and (out / "decoder.safetensors").exists()
    # the loss fell below the uniform guess over a voice's legal tokens
    assert v["loss"] < np.log(40)
