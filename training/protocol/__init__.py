"""Leave-one-out evaluation of the detectors: ``python -m training.protocol run --config CFG``.

Leave one real source out (train without it; false alarms on it at the threshold fixed on dev) and leave one
synthesizer family out (train the supervised model without it; its EER), for the one-class model, the
supervised companion and their fusion, on both channels, with bootstrap confidence intervals, in the report
format of :mod:`training.evaluation`.
"""
