"""Per-item enrichment: summaries, text extraction, embeddings."""
