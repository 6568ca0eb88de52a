"""lpmlib: the Latent Perturbation Model of a tumour's multi-omic state, and its in-silico experiments."""

__version__ = "0.1.0"
