"""Exporting signatures as CSV. (Stub.)"""
