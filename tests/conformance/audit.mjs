// The GraphQL-over-HTTP audit of graphql-http against a running console.
// Usage: node audit.mjs http://127.0.0.1:8000/graphql   -> prints a JSON summary, exits 1 on any error
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const results = await auditServer({ url });
const summary = { ok: 0, warn: [], error: [] };
for (const result of results) {
  if (result.status === 'ok') summary.ok += 1;
  else summary[result.status].push(`${result.id} ${result.name}: ${result.reason}`);
}
console.log(JSON.stringify(summary, null, 2));
process.exit(summary.error.length ? 1 : 0);
