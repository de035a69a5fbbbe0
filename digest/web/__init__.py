"""Blueprints: the subscriber pages (public) and the editor's desk (admin)."""
