"""Evaluation utilities for scoring predicted person mattes against ground truth."""
