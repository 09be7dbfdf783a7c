"""Inference engines for counters (``count --engine``): torch, onnx (ONNX Runtime), trt (TensorRT).

An :class:`~cellxfer.engines.base.Engine` is provided through the ``cellxfer_engines`` hook; its
``load(model_path, device=...)`` returns a :class:`~cellxfer.engines.base.Runner`, a callable mapping
float32 (N, C, S, S) windows to (N, ...) outputs that also carries the model's CounterMeta.
"""
