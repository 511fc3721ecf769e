"""coldrec: cold-start recommendation on Ray with a text profile model."""

__version__ = "0.1.0"
