// Whether this machine's libfuse 3 can build the binding: run by install.cjs
// and binding.gyp before the build, to skip or stop it with a clear sentence
// where libfuse 3 is missing or older than 3.10 (npm hides an installed
// package's compiler output), and by index.cjs to say why the binding is not
// there.
'use strict';
const { execFileSync } = require('node:child_process');

const MIN = [3, 10];

/** The problem in one sentence, or undefined when libfuse 3 is recent enough. */
function libfuseProblem() {
  let version;
  try {
    version = execFileSync('pkg-config', ['--modversion', 'fuse3'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'libfuse 3 development files not found (pkg-config fuse3): install libfuse3-dev and pkg-config, then npm install';
  }
  const [major, minor] = version.split('.').map(Number);
  if (major !== MIN[0] || !(minor >= MIN[1])) return `libfuse ${version} found, the binding needs libfuse ${MIN.join('.')} or newer`;
  return undefined;
}

module.exports = { libfuseProblem };

if (require.main === module) {
  const problem = libfuseProblem();
  if (problem !== undefined) {
    console.error(`sosmount-fuse3: ${problem}; mounts will use libfuse 2 (fuse-native)`);
    process.exit(1);
  }
  console.log('ok');
}
