"""Emotion → music: mood model, strategies, catalogs (offline, CSV import, Spotify search)."""
