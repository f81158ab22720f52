// Runs one subscription with the graphql-ws client and prints the events it receives as JSON
// lines. Usage: node subscribe.mjs ws://host/graphql TOKEN 'subscription { ... }' COUNT
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const [url, token, query, count] = process.argv.slice(2);
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0,
});
let seen = 0;
await new Promise((resolve, reject) => {
  const unsubscribe = client.subscribe({ query }, {
    next: (value) => {
      console.log(JSON.stringify(value));
      seen += 1;
      if (seen >= Number(count)) { unsubscribe(); resolve(); }
    },
    error: reject,
    complete: resolve,
  });
  console.error('subscribed');
});
await client.dispose();
