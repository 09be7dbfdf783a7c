"""cellxfer: synthetic-to-real transfer for microscopy cell counting.

Library first: every stage is a plain function over a typed config; the ``cellxfer`` CLI only parses
options and prints. Heavy dependencies (torch, diffusers, onnxruntime) are imported by the functions
that need them, never at package import.
"""

__version__ = "0.1.0"
