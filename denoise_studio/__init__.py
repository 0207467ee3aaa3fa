"""Denoise Studio: a desktop workbench for the building blocks of diffusion models."""

__version__ = "0.1.0"
