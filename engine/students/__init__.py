"""Students: the mesh student and the VAEs (teacher VAE and TinyVAE)."""
