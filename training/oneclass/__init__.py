"""One-class STFPM detector with Discrepancy Scaling: front end, backbones, model, trainer, evaluation.

Command line: ``python -m training.oneclass {train,evaluate,tiny-corpus}``; export with ``python -m export
oneclass``. Design notes live in the module docstrings (frontend.py, model.py, trainer.py).
"""
