"""Verification: answer checking, pass@k, the code sandbox."""
