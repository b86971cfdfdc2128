"""The grid: run options, presets, and the expansion of a grid into cells."""
