"""The GraphQL API (Strawberry): one module per domain, assembled in `schema.py`."""
