"""The stages of a cell, one small class each: train, evaluate, modularize, reuse, record."""
