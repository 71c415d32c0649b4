"""emu3.generate"""
