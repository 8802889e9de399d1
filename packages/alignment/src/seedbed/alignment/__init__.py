"""Seedbed alignment: preference learning, constitutions, RLHF and verification."""

from importlib.metadata import version as _version

from seedbed.alignment.preference import bradley_terry_loss, dpo_loss

__version__ = _version("seedbed-alignment")

__all__ = ["__version__", "bradley_terry_loss", "dpo_loss"]
