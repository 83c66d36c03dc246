"""Decode benchmark: every figure measured in one run on one machine, with the ratios between them.

    python bench/bench_decode.py [--model uniform|sameseq|DIR] [--bars 12] [--json bench/results.json]

Per 4/4 bar (64 tokens, batch 1) at 1, 4 and 8 bars of context:
  ort_cache     onnxruntime, decoder_step.onnx with the fixed-size ring cache (the product's path)
  ort_nocache   onnxruntime, a full-forward graph re-run over the whole window for every token
  torch_cache   torch, the same ring cache (TorchStream)
  torch_nocache torch, the full forward over the whole window for every token
plus: encoder time per bar; the latency a musician feels (bar close -> codes -> first output tick
decoded, p99); 8 candidates in one batch vs 1; int8 vs fp32 step graph. Needs the `train` extra.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

CONTEXTS = (1, 4, 8)


def machine() -> str:
    import onnxruntime
    import torch

    cpu = "unknown cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, python "
            f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}, torch {torch.__version__}")


def stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"median": round(float(np.median(a)), 3), "p99": round(float(np.percentile(a, 99)), 3), "n": len(a)}


def export_full_graph(decoder, path: Path):
    """A full-forward graph (tokens, positions, codes -> logits) for the no-cache ORT baseline."""
    import torch

    class Full(torch.nn.Module):
        def __init__(self, d):
            super().__init__()
            self.d = d

        def forward(self, tok_in, pos, codes, code_beat, bpb):
            return self.d(tok_in, pos, codes, code_beat, bpb)[:, -1]

    T, n = 96, 24
    args = (torch.zeros(1, T, dtype=torch.long), torch.arange(T)[None], torch.zeros(1, n, dtype=torch.long),
            torch.arange(n)[None], torch.tensor([4]))
    m = Full(decoder).eval()
    torch.onnx.export(m, args, str(path), input_names=["tok", "pos", "codes", "beat", "bpb"], output_names=["logits"],
                      dynamic_axes={"tok": {1: "t"}, "pos": {1: "t"}, "codes": {1: "n"}, "beat": {1: "n"}},
                      opset_version=17, dynamo=False)
    decoder.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="uniform")
    ap.add_argument("--bars", type=int, default=12, help="bars timed per configuration (cached paths)")
    ap.add_argument("--nocache-bars", type=int, default=3, help="bars timed for the slow no-cache paths")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for both runtimes")
    ap.add_argument("--json", type=Path, default=Path("bench/results.json"))
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from vqcpc.export.runtime import Engine
    from vqcpc.models.registry import resolve_model
    from vqcpc.models.stream import TorchStream
    from vqcpc.models.train_decoder import load_decoder
    from vqcpc.music.io import load

    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    engine = Engine(model_dir, threads=args.threads)
    decoder, _ = load_decoder(model_dir)
    W = decoder.cfg.window
    grid = load("bwv269")  # a test chorale; its real tokens and codes feed every path
    grid4 = load("bwv38.6")
    if grid4.beats_per_bar != 4:
        raise SystemExit("bench needs a 4/4 chorale")
    from vqcpc.models.generate import padded_to_bars, template_codes

    codes = template_codes(engine, grid4)
    toks = padded_to_bars(grid4).reshape(-1).astype(np.int64)
    bpb, tpb = 4, 64
    n_bars = len(codes) // bpb
    rng = np.random.default_rng(0)
    out = {"bar_ms": {}, "machine": machine(), "model": model_dir.name, "threads": args.threads}

    def ort_stream_bar_times(eng, ctx, bars, batch=1):
        times = []
        for rep in range(bars):
            s = eng.new_stream(bpb, batch)
            for b in range(ctx - 1):  # context bars, streamed before the timed one
                s.push_codes(np.tile(codes[(b % n_bars) * bpb:(b % n_bars + 1) * bpb], (batch, 1)))
                for p in range(b * tpb, (b + 1) * tpb):
                    s.step(np.full(batch, toks[(p - 1) % len(toks)]) if p else None)
            b = ctx - 1
            t0 = time.perf_counter()
            s.push_codes(np.tile(codes[(b % n_bars) * bpb:(b % n_bars + 1) * bpb], (batch, 1)))
            for p in range(b * tpb, (b + 1) * tpb):
                s.step(np.full(batch, toks[(p - 1) % len(toks)]) if p else None)
            times.append((time.perf_counter() - t0) * 1000)
        return times

    def torch_stream_bar_times(ctx, bars):
        times = []
        with torch.no_grad():
            for rep in range(bars):
                s = TorchStream(decoder, bpb)
                for b in range(ctx):
                    t0 = time.perf_counter()
                    s.push_codes(torch.as_tensor(codes[(b % n_bars) * bpb:(b % n_bars + 1) * bpb])[None])
                    for p in range(b * tpb, (b + 1) * tpb):
                        s.step(torch.tensor([toks[(p - 1) % len(toks)]]) if p else None)
                    if b == ctx - 1:
                        times.append((time.perf_counter() - t0) * 1000)
        return times

    def nocache_bar_times(run_full, ctx, bars):
        """Every token re-runs the full forward over the window that ends at it."""
        times = []
        for rep in range(bars):
            b = ctx - 1
            t0 = time.perf_counter()
            for p in range(b * tpb, (b + 1) * tpb):
                lo = max(0, p - W + 1)
                tok_in = np.concatenate([[decoder.start_token] if lo == 0 else toks[lo - 1:lo], toks[lo:p]]).astype(np.int64)
                first_bar = max(0, lo // tpb - 8)
                c = np.resize(codes, (b + 1) * bpb)[first_bar * bpb:]
                run_full(tok_in[None], np.arange(lo, p + 1)[None], c[None], np.arange(first_bar * bpb, (b + 1) * bpb)[None])
            times.append((time.perf_counter() - t0) * 1000)
        return times

    with tempfile.TemporaryDirectory() as tmp:
        full_path = Path(tmp) / "decoder_full.onnx"
        export_full_graph(decoder, full_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.log_severity_level = 3
        full = ort.InferenceSession(str(full_path), so, providers=["CPUExecutionProvider"])

        def ort_full(t, p, c, cb):
            return full.run(None, {"tok": t, "pos": p, "codes": c, "beat": cb, "bpb": np.array([bpb])})[0]

        def torch_full(t, p, c, cb):
            with torch.no_grad():
                return decoder(torch.as_tensor(t), torch.as_tensor(p), torch.as_tensor(c), torch.as_tensor(cb),
                               torch.tensor([bpb]))[:, -1]

        for ctx in CONTEXTS:
            out["bar_ms"][f"ort_cache_{ctx}bars"] = stats(ort_stream_bar_times(engine, ctx, args.bars))
            out["bar_ms"][f"torch_cache_{ctx}bars"] = stats(torch_stream_bar_times(ctx, max(3, args.bars // 3)))
            out["bar_ms"][f"ort_nocache_{ctx}bars"] = stats(nocache_bar_times(ort_full, ctx, args.nocache_bars))
            out["bar_ms"][f"torch_nocache_{ctx}bars"] = stats(nocache_bar_times(torch_full, ctx, args.nocache_bars))
            print(f"context {ctx} bars: " + ", ".join(f"{k.rsplit('_', 1)[0]} {v['median']:.1f} ms"
                                                      for k, v in out["bar_ms"].items() if k.endswith(f"_{ctx}bars")), flush=True)
    out["bar_ms"]["ort_cache"] = out["bar_ms"]["ort_cache_8bars"]
    out["bar_ms"]["torch_cache"] = out["bar_ms"]["torch_cache_8bars"]
    out["bar_ms"]["ort_nocache"] = out["bar_ms"]["ort_nocache_8bars"]
    out["bar_ms"]["torch_nocache"] = out["bar_ms"]["torch_nocache_8bars"]
    out["bar_ms"]["ort_cache_batch8"] = stats(ort_stream_bar_times(engine, 8, max(3, args.bars // 3), batch=8))
    if engine.step_b1 is not None:  # batch 1 on the dynamic-batch graph, as a model without the fixed one runs
        dynamic = Engine(model_dir, threads=args.threads)
        dynamic.step_b1 = None
        out["bar_ms"]["ort_cache_dynamic_graph"] = stats(ort_stream_bar_times(dynamic, 8, args.bars))

    int8_name = "decoder_step.int8.onnx"
    if (model_dir / int8_name).exists():
        out["bar_ms"]["ort_cache_int8"] = stats(ort_stream_bar_times(Engine(model_dir, threads=args.threads, variant="int8"), 8, args.bars))

    # encoder: one bar (4 beats) -> codes
    beats = grid4.beat_tokens()[:4].astype(np.int64)
    enc_times = []
    for _ in range(200):
        t0 = time.perf_counter()
        engine.encode(beats)
        enc_times.append((time.perf_counter() - t0) * 1000)
    out["encode_bar_ms"] = stats(enc_times)

    # what a musician feels: the bar closes -> encode -> codes pushed -> first tick (4 voices) decoded
    first = []
    for rep in range(60):
        s = engine.new_stream(bpb, 1)
        for b in range(rep % 8):
            s.push_codes(codes[b * bpb:(b + 1) * bpb][None])
            for p in range(b * tpb, (b + 1) * tpb):
                s.step(np.array([toks[p - 1]]) if p else None)
        b = rep % 8
        t0 = time.perf_counter()
        c = engine.encode(grid4.beat_tokens()[b * bpb:(b + 1) * bpb].astype(np.int64))
        s.push_codes(c[None])
        for p in range(b * tpb, b * tpb + 4):
            s.step(np.array([toks[p - 1]]) if p else None)
        first.append((time.perf_counter() - t0) * 1000)
    out["first_tick_ms"] = stats(first)

    bm = out["bar_ms"]
    out["ratios"] = {
        "ort_cache_vs_torch_nocache_8bars": round(bm["torch_nocache_8bars"]["median"] / bm["ort_cache_8bars"]["median"], 2),
        "ort_cache_vs_torch_cache": round(bm["torch_cache_8bars"]["median"] / bm["ort_cache_8bars"]["median"], 2),
        "ort_cache_vs_ort_nocache_8bars": round(bm["ort_nocache_8bars"]["median"] / bm["ort_cache_8bars"]["median"], 2),
        "batch8_vs_batch1": round(bm["ort_cache_batch8"]["median"] / bm["ort_cache_8bars"]["median"], 2),
    }
    if "ort_cache_int8" in bm:
        out["ratios"]["fp32_vs_int8"] = round(bm["ort_cache_8bars"]["median"] / bm["ort_cache_int8"]["median"], 2)
    if "ort_cache_dynamic_graph" in bm:
        out["ratios"]["dynamic_graph_vs_batch1_graph"] = round(bm["ort_cache_dynamic_graph"]["median"] /
                                                              bm["ort_cache_8bars"]["median"], 2)
    goals = {"ort_cache_10x_faster_than_torch_nocache_8bars": out["ratios"]["ort_cache_vs_torch_nocache_8bars"] >= 10,
             "ort_cache_2x_faster_than_torch_cache": out["ratios"]["ort_cache_vs_torch_cache"] >= 2,
             "first_tick_p99_at_most_15ms": out["first_tick_ms"]["p99"] <= 15,
             "bar_p99_at_most_40ms": bm["ort_cache_8bars"]["p99"] <= 40}
    out["goals_met"] = goals
    args.json.parent.mkdir(parents=True, exist_ok=True)
    if args.json.exists():  # bench_daemon.py's figures stay
        previous = json.loads(args.json.read_text())
        if "daemon" in previous:
            out["daemon"] = previous["daemon"]
    args.json.write_text(json.dumps(out, indent=1))
    print(f"\nmachine: {out['machine']}")
    print(f"{'path':<28}{'median ms':>10}{'p99 ms':>10}")
    for k, v in bm.items():
        print(f"{k:<28}{v['median']:>10.1f}{v['p99']:>10.1f}")
    print(f"{'encode one bar':<28}{out['encode_bar_ms']['median']:>10.2f}{out['encode_bar_ms']['p99']:>10.2f}")
    print(f"{'bar close -> first tick':<28}{out['first_tick_ms']['median']:>10.2f}{out['first_tick_ms']['p99']:>10.2f}")
    for k, v in out["ratios"].items():
        print(f"ratio {k}: {v}x")
    for k, v in goals.items():
        print(f"goal {k}: {'met' if v else 'MISSED'}")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
