"""microdc-pipeline: what micro data centers cost per request in energy, money and carbon."""

__version__ = "0.1.0"
