"""Evidence packages: creation, items, sealing, sharing, retrieval."""
