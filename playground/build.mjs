// Assemble dist/: our page and script from src/, and the third-party files the
// page loads, copied from node_modules (installed from package-lock.json).
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
};

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "vendor"), { recursive: true });
for (const [name, source] of Object.entries(vendor)) {
  cpSync(join(here, "node_modules", source), join(dist, "vendor", name));
}
cpSync(join(here, "src"), dist, { recursive: true });

// Compressed once here, so the gateway does not compress them on every request.
for (const name of readdirSync(join(dist, "vendor"))) {
  const path = join(dist, "vendor", name);
  writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }));
}
console.log(`playground: built ${dist}`);
