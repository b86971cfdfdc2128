"""Checkpoints from elsewhere, mapped onto the zoo's models: the MwT and NeMo authors' releases."""
