"""The translator model (pix2pix generator, PatchGAN, checkpoint format and metadata): the model layer
under the ``translate`` pipelines (:mod:`cellxfer.translate`) and the ONNX export
(:mod:`cellxfer.export.translator`)."""
