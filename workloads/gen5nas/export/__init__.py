"""The export and retrain steps: cut a chosen subnet out of the supernet, optionally retrain it,
write a verified ONNX model and its JSON card.

Modules, one responsibility each: ``resolve`` (which subnet: arch file, inline arch, or a study
trial), ``input_shape`` (the input-shape policy), ``prepare`` (checkpoint + subnet + data, BN
recalibration, inherited accuracy), ``retrain`` (fine-tune or from scratch with the supernet's
Trainer), ``export`` (ONNX export, checker, onnxruntime parity, atomic write), ``onnx_card``
(the JSON card), ``cli`` (``gen5nas export`` and ``gen5nas retrain``). Nothing heavy is imported
here: the CLI's ``--help`` stays instant.
"""
