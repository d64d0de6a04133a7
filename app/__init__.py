"""Undersigned: open letters, signed and confirmed by email, counted exactly."""
