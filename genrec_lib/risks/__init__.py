"""Measured risks of recommenders (chapter 17): fairness gaps, feedback loops, privacy, attacks.

Each module turns one harm into a number with an interval: :mod:`.fairness` (metric gaps
across user groups, exposure of long-tail items), :mod:`.feedback` (simulated rounds of
accepting recommendations), :mod:`.privacy` (membership inference, verbatim memorisation)
and :mod:`.attacks` (fake-user poisoning, prompt injection). No function here changes the
dataset or split it is given: each returns a new one.
"""
