"""Exporting torch modules to deployable formats: ONNX (:mod:`.onnx`) and TensorRT engines (:mod:`.trt`).

:mod:`.counter` exports counter checkpoints with everything ``cellxfer count`` needs in the metadata.
"""
