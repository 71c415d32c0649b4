"""emu3.serve"""
