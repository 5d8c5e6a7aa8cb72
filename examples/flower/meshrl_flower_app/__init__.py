"""A Flower App training a meshrl routing agent across machines (see README.md)."""
