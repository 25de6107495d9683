"""oncobench: synthetic precision-oncology benchmark releases with counterfactual ground truth."""

__version__ = "0.1.0"
