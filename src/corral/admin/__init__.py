"""Operator surface: four-letter words (and later the HTTP admin API and metrics)."""
