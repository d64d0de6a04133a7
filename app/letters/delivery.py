"""Delivering a letter: the response and milestones. (Stub.)"""
