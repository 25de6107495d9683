"""Virtual randomised trials of the NSCLC model.

:mod:`oncobench.trials.spec` reads a trial specification (YAML: population, eligibility, line
of therapy, arms, accrual, data cut-off, scan schedule, endpoints, published results) into a
frozen :class:`~oncobench.trials.spec.TrialSpec`; the shipped specs (KEYNOTE-024, KEYNOTE-189,
FLAURA, ALEX for calibration; KEYNOTE-010 held out) live in ``oncobench/data/trials/``.
:mod:`oncobench.trials.analysis` censors the simulated per-patient outcomes at the data cut-off,
computes Kaplan-Meier medians, Cox hazard ratios, log-rank tests, response and adverse-event
rates per replicate, and compares them with the published results.
"""
