// A front end's subscription, through the npm graphql-ws client (graphql-transport-ws):
//   node graphql_ws_client.mjs URL TOKEN COUNT PLAYGROUND_DIR [AFTER]
// signs in with TOKEN in connection_init's payload ({authorization: "Bearer TOKEN"}),
// subscribes to familyEvents (after the cursor AFTER, if given) and prints, one JSON
// line each on stdout:
//   {"ready": true}                   once connected and the subscription sent
//   <the payload of each next>        e.g. {"data": {"familyEvents": {...}}}
//   {"closed": CODE, "reason": "..."} if the connection closes (then exits 0)
//   {"error": ...}                    if the subscription is answered with an error (exits 1)
// and exits 0 after COUNT events. graphql-ws and, where node has no global WebSocket
// (before node 22), ws come from the playground's node_modules (scripts/install).
// Run by tests/test_subscriptions_npm.py.
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [url, token, count, playground, after] = process.argv.slice(2);
if (!url || !token || !count || !playground) {
  process.stderr.write("usage: node graphql_ws_client.mjs URL TOKEN COUNT PLAYGROUND_DIR [AFTER]\n");
  process.exit(2);
}
const wanted = Number(count);
const require = createRequire(pathToFileURL(path.join(playground, "package.json")));
const { createClient } = require("graphql-ws");
const WebSocketImpl = globalThis.WebSocket ?? require("ws");

const FOLLOW = `subscription Follow($after: String) {
  familyEvents(after: $after) {
    cursor kind at
    binding { bindingId status relation authorizer { name } beneficiary { name } province }
    payment { amount balanceAfter patient { name } institutionCode medicalType }
    write { operation refusal }
  }
}`;

let finished = false;

// One line, written out before anything else happens (stdout may be a pipe).
function say(value) {
  return new Promise((resolve) => process.stdout.write(`${JSON.stringify(value)}\n`, resolve));
}

async function finish(code, last) {
  if (finished) return;
  finished = true;
  if (last !== undefined) await say(last);
  process.exit(code);
}

const client = createClient({
  url,
  webSocketImpl: WebSocketImpl,
  connectionParams: { authorization: `Bearer ${token}` },
  retryAttempts: 0, // a close is reported, never retried
  on: {
    // connected: the subscribe message goes out in the microtasks that follow the
    // acknowledgement; a macrotask later it has been sent
    connected: () => setImmediate(() => finished || say({ ready: true })),
    closed: (event) => finish(0, { closed: event.code, reason: event.reason ?? null }),
  },
});

let seen = 0;
client.subscribe(
  { query: FOLLOW, variables: after ? { after } : {} },
  {
    next: async (payload) => {
      if (finished) return;
      seen += 1;
      await say(payload);
      if (seen >= wanted) await finish(0);
    },
    // a CloseEvent is also told to `closed` above, which comes first
    error: (error) => finish(1, { error: error instanceof Error ? { message: error.message } : error }),
    complete: () => finish(0, { complete: true }),
  },
);
