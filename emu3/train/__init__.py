"""emu3.train"""
