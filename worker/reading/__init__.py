"""Reading digits: decode a scan, clean it, find its digits, classify them, choose the string.

The data path, one module per step: `pipeline` (fetch, then decode → preprocess → segment
concurrently; batched passes of `inference`; choosing a string).
"""
