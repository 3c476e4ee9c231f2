"""Data: the shoe dataset layout and its validator, photos, procedural sample shoes and their
rendered views, and the image datasets the VAE learns from."""
