"""emu3.data"""
