"""Checks of the validate stage: secrets, schema, normalisation, dedup, near-dup, limits."""

from .pipeline import REJECT_REASONS, DedupState, Validator, load_state, save_state
from .secrets import SecretFinding, find_secrets, mask_secrets

__all__ = ["REJECT_REASONS", "DedupState", "SecretFinding", "Validator", "find_secrets",
           "load_state", "mask_secrets", "save_state"]
