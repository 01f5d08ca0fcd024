"""Example configurations shipped inside the package (the embedded default lives here)."""
