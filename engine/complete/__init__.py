"""engine/complete"""
