"""`vqcpc-export MODEL_DIR`: the ONNX graphs and manifest of a trained model."""
from __future__ import annotations

import logging

import click



@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: MODEL_DIR).")
@click.option("--int8", is_flag=True, help="Also write an int8 (dynamic quantization) step graph.")
@click.option("--fp16", is_flag=True, help="Also write an fp16 step graph (needs onnxconverter-common).")
@click.option("--force", is_flag=True, help="Overwrite existing ONNX files and manifest.")
def export_cmd(model_dir, out_dir, int8, fp16, force):
    """Export a trained model directory to ONNX and check it against torch."""
    from pathlib import Path

    from .onnx_export import export_model

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    m = export_model(Path(model_dir), Path(out_dir) if out_dir else None, int8=int8, fp16=fp16, force=force)
    where = out_dir or model_dir
    for k, v in m["checks"].items():
        click.echo(f"{k}: {v}")
    click.echo(f"wrote {', '.join(m['sha256'])} and model.json to {where}")


def main():
    from vqcpc.entry import run

    run(export_cmd)
