"""emu3.convert"""
