"""engine/eval"""
