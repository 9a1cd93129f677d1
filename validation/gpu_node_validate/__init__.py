"""Node-side validation: proves a GPU node does its work (without GPUs: that the code is right)."""

__version__ = "0.1.0"
