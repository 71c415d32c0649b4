"""emu3.model"""
