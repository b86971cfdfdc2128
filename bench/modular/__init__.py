"""The modular machinery methods share: mask generators, module masks from activity, extraction."""
