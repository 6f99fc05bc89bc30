"""Local runs: the template's resources in a moto server, real-shaped events, a local Lambda runner."""
