"""Thin command layers; logic lives in plain modules."""
