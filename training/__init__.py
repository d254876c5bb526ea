"""Training-side code for stream-guard: corpora, augmentation, models, trainers, evaluation.

Nothing under ``training/`` is imported by the runtime (``stream_guard``); it may depend on the ``train``
extra (torch, librosa, pyworld, ...). Audio helpers shared by every training tool live in
:mod:`training.audio_io`.
"""
