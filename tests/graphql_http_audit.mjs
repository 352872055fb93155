// The graphql-http audit (GraphQL over HTTP) against a gateway at the URL given:
// prints one JSON array of {id, name, status, reason}. Run by tests/test_http_spec.py.
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import path from "node:path";

const [url, playground] = process.argv.slice(2);
const require = createRequire(pathToFileURL(path.join(playground, "package.json")));
const { auditServer } = await import(pathToFileURL(require.resolve("graphql-http")).href);
const results = await auditServer({ url });
console.log(JSON.stringify(results.map((r) => ({ id: r.id, name: r.name, status: r.status, reason: r.reason ?? null }))));
