"""Renderers: a neutral Reply in, what one platform shows out."""
