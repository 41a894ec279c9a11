"""Training: the dataset over run folders and the training loop."""
