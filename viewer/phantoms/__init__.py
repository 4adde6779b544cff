"""Synthetic studies with known ground truth: chest radiographs and head CT series."""
