"""Pure DataFrame transforms shared by the cohort engine and the analyses (no I/O, no collect)."""
