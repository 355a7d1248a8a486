"""Training: how a run starts, the data it prepares, the loop on the twelve spheres (threads or Ray), its time
budget and its finish; pretraining a base, and the base shipped in the package."""
