#!/usr/bin/env node
// A solc command-line shim over the npm `solc` package (the official compiler built to WASM),
// so py-solc-x and brownie can compile here without downloading a native binary.
// It speaks just the part of the solc CLI they use: --version and --standard-json (stdin).
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const args = process.argv.slice(2);
const out = (text) => fs.writeSync(1, text); // not process.stdout.write: that truncates at 64 KiB on exit

if (args.includes('--version')) {
  out(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
  process.exit(0);
}
if (!args.includes('--standard-json')) {
  fs.writeSync(2, `solc shim: only --version and --standard-json are supported (got: ${args.join(' ')})\n`);
  process.exit(2);
}
// --allow-paths / --base-path are accepted: imports are resolved by the callback below,
// relative to the working directory (brownie passes remapped, project-relative paths).
const basePathIdx = args.indexOf('--base-path');
const base = basePathIdx >= 0 ? args[basePathIdx + 1] : process.cwd();
function findImports(p) {
  for (const candidate of [p, path.resolve(base, p), path.resolve(process.cwd(), p)]) {
    try { return { contents: fs.readFileSync(candidate, 'utf8') }; } catch (e) { /* next */ }
  }
  return { error: `File not found: ${p}` };
}
const input = fs.readFileSync(0, 'utf8');
out(solc.compile(input, { import: findImports }));
process.exit(0);
