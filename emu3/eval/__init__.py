"""emu3.eval"""
