"""Built-in plugin: ``cellxfer export`` (counter -> ONNX / TensorRT) and the torch / onnx / trt engines."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cellxfer.commands import CommandSpec, Output, Role
from cellxfer.errors import ExitCode
from cellxfer.hookspecs import hookimpl
from cellxfer.options import config_option, deprecated_flag, out_option, overwrite_option, precision_option, trt_fp16

EXPORT = CommandSpec(
    "export", interrupted="nothing was written (--out appears only when complete); rerun the same command",
    reads={Role.MODEL: ExitCode.BAD_INPUT}, writes=Output.FILE, out_suffix=".onnx",
    argv=lambda x: ["export", "-m", x.model, "-o", x.out], extra="train",
)


@hookimpl
def cellxfer_commands():
    return [EXPORT]


@hookimpl
def cellxfer_engines():
    from cellxfer.engines import onnx_engine, torch_engine, trt_engine

    return [trt_engine.ENGINE, onnx_engine.ENGINE, torch_engine.ENGINE]


@hookimpl
def cellxfer_register_commands(app: typer.Typer):
    from cellxfer.export.config import ExportConfig as X  # numpy-free: the defaults and ranges below are its

    @app.command("export")
    def export(
        model: Path = typer.Option(..., "--model", "-m", help="Counter checkpoint (.safetensors) from train-count, or a translator (run folder or .safetensors) from train-translate/adapt."),
        format: str = config_option(X, "format", "onnx, or trt (a TensorRT engine; NVIDIA GPU + the trt extra).", "--format", "-f"),
        out: Optional[Path] = out_option("The .onnx file to write (trt: built from it) [default: counter.onnx; a translator: beside it].", None),
        check_images: list[Path] = typer.Option([], "--check-images", help="Real images/folders whose windows the parity check uses [default: Syn-HC images]."),
        atol: float = config_option(X, "atol", help="Parity: largest allowed absolute difference (per output)."),
        rtol: float = config_option(X, "rtol", help="Parity: largest allowed relative difference (passes if either holds)."),
        precision: str = precision_option("auto, fp16 or fp32: the TensorRT engine's arithmetic (auto = fp16); torch and onnx run fp32."),
        fp32: bool = deprecated_flag("--fp32", "use --precision fp32"),
        opt_batch: int = config_option(X, "opt_batch", help="trt: optimisation-profile batch (windows); count sends --batch-size (24)."),
        max_batch: int = config_option(X, "max_batch", help="trt: largest batch (windows) of the profile."),
        engine_out: Optional[Path] = typer.Option(None, help="trt: also copy the engine here [default: cache only]."),
        opset: int = config_option(X, "opset", "ONNX opset."),
        overwrite: bool = overwrite_option("Replace --out when it exists."),
    ):
        """Export a counter (ONNX with window, normalisation, arch, version; or TensorRT) or a translator (ONNX), with a parity check."""
        from cellxfer.console import out as console
        from cellxfer.export.counter import export_model

        config = X(model=model, out=out, format=format, opset=opset, check_images=tuple(check_images),
                              atol=atol, rtol=rtol, fp16=trt_fp16(precision, fp32), opt_batch=opt_batch, max_batch=max_batch,
                              engine_out=engine_out, overwrite=overwrite)
        result = export_model(config, log=console.print)
        console.print(f"{result.out}: ONNX written ({result.out.stat().st_size / 2**20:.1f} MiB)"
                      + (f"; TensorRT engine {result.engine}" if result.engine else "") + f"; {result.seconds:.1f} s")
