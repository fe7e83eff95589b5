"""Pieces shared by the package's algorithms: replay buffers and weight transfer."""
