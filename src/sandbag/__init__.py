"""sandbag: train CNNs under regularization and measure what each technique does."""
