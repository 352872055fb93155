// Assemble dist/: our page and script from src/, and the third-party files the
// page loads, copied from node_modules (installed from package-lock.json), one
// line of GraphiQL's variables linter corrected (below; docs/playground.md).
// dist/ is never committed; scripts/install runs this after `npm ci`.
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");

// name served under /playground/vendor/  <-  file in node_modules/
const vendor = {
  "react.production.min.js": "react/umd/react.production.min.js",
  "react-dom.production.min.js": "react-dom/umd/react-dom.production.min.js",
  "graphiql.min.js": "graphiql/graphiql.min.js",
  "graphiql.min.css": "graphiql/graphiql.min.css", // fonts are inlined as data: URLs
  "plugin-explorer.umd.js": "@graphiql/plugin-explorer/dist/index.umd.js",
  "plugin-explorer.css": "@graphiql/plugin-explorer/dist/style.css",
  // loaded by playground.js on the first subscription (global graphqlWs)
  "graphql-ws.min.js": "graphql-ws/umd/graphql-ws.min.js",
};

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "vendor"), { recursive: true });
for (const [name, source] of Object.entries(vendor)) {
  cpSync(join(here, "node_modules", source), join(dist, "vendor", name));
}
cpSync(join(here, "src"), dist, { recursive: true });

// GraphiQL's variables linter (codemirror-graphql 2.2.9, inside graphiql.min.js) calls an
// input field left out "missing" when its type is non-null and its default is falsy:
// it tests `!field.defaultValue` where it means "has no default" (graphql/graphiql#3455,
// #3571). The spec lets a field with a default be left out, whatever the default, and
// the gateway does; but `commitmentSigned: Boolean! = false` and `dryRun: Boolean! =
// false` were underlined in every bindMutualAid example. The one test is made exact.
// A GraphiQL that no longer has the line fails the build: look again at its linter.
patchOnce(
  join(dist, "vendor", "graphiql.min.js"),
  /&&!(\w+)\.defaultValue(&&\w+\.push\(\[\w+,`Object of type "\$\{\w+\}" is missing required field)/g,
  "&&void 0===$1.defaultValue$2",
);

// Compressed once here, so the gateway does not compress them on every request.
for (const name of readdirSync(join(dist, "vendor"))) {
  const path = join(dist, "vendor", name);
  writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }));
}
console.log(`playground: built ${dist}`);

function patchOnce(path, pattern, replacement) {
  const text = readFileSync(path, "utf8");
  const found = text.match(pattern) || [];
  if (found.length !== 1) {
    throw new Error(`${path}: expected the line to patch once, found it ${found.length} times`);
  }
  writeFileSync(path, text.replace(pattern, replacement));
}
