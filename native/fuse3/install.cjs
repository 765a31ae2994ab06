// The package's install script (npm install or ci in a checkout, npm install
// -g of the packed tarball): compiles the binding in this folder. Where it
// cannot be compiled (no libfuse3-dev, a libfuse 3 older than 3.10, no
// compiler) the install goes on and mounts use fuse-native over libfuse 2,
// as they would without this binding; index.cjs then says why at mount time.
'use strict';
const { spawnSync } = require('node:child_process');
const { libfuseProblem } = require('./check-libfuse.cjs');

function fallBack(why) {
  console.warn(`sosmount-fuse3: ${why}; mounts will use libfuse 2 (fuse-native)`);
  process.exit(0);
}

if (process.platform !== 'linux') fallBack(`libfuse 3 binding not built on ${process.platform}`);
const problem = libfuseProblem();
if (problem !== undefined) fallBack(problem);

// npm hands its scripts the node-gyp it bundles; run by hand, take the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const result = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild', '--loglevel=warn'], { cwd: __dirname, stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild', '--loglevel=warn'], { cwd: __dirname, stdio: 'inherit' });
if (result.status !== 0) fallBack(`node-gyp rebuild failed (${result.error?.message ?? `exit code ${result.status}`})`);
