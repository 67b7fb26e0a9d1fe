-- The knowledge base gets its own database next to Dagster's.
CREATE DATABASE knowledge_base OWNER dagster;
