"""emu3.recipes"""
