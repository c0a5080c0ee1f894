"""The storage seam: what each domain needs of persistence, and its backends."""
