"""Teachers: slow multiview-photo -> mesh models (embedded visual hull, Hunyuan3D-2mv)."""
