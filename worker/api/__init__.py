"""The HTTP service, `scandigits serve`: FastAPI routes over the functions the CLI uses.

Only `scandigits serve` imports FastAPI (`app`, the routes and their dependencies); `tokens`
is plain Python, for the `scandigits token` commands too.
"""
