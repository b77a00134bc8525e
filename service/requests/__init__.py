"""Mutual legal assistance requests: filing, their life, deadlines and the deliveries answering
them (endpoints, service, repository, schemas, tables)."""
