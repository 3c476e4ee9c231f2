"""Training: 3D distillation, VAE phases, schedules and losses that are not pure geometry."""
