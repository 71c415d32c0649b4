"""emu3.tokens"""
