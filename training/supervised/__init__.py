"""Supervised companion detector: an ImageNet EfficientNet-Lite0 fine-tuned as a binary classifier (real vs
synthetic) on the same in-graph log-mel front end as the one-class model.

Command line: ``python -m training.supervised {train,evaluate,export}``. The one-class engineer's front end,
backbone definition (strict ImageNet loading), checkpoint format, manifest reader, crop sampler, augmentation
and metrics are reused, so there is one way to do each of those things in the project.
"""
