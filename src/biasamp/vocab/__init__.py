"""Bundled vocabularies (occupations, prompt templates, gender lexicons) with their sources."""

from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    """Path of a bundled data file in this package."""
    return Path(str(resources.files(__package__).joinpath(name)))
