"""Operators: each a thin layer over the core and the backends."""
