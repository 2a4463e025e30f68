"""Live handwritten-digit recognition server."""
