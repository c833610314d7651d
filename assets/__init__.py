"""Bundled data files for the default scene (package data)."""
