"""The rules, as plain async functions on models: no GraphQL and no HTTP here."""
