"""Procedural and packaged worlds for demos and evaluation (numpy / PIL only; no emu3 imports)."""
