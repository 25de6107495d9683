"""Precision-oncology NSCLC patient model: drugs, pharmacology, toxicity, tumour and trials."""
