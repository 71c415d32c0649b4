"""emu3.vision"""
