"""Model layer: shapes from configs, the catalog, precisions, model resolution."""
