// Loads the compiled binding; the typed wrapper is app/fs/fuse3-session.ts.
'use strict';
try {
  module.exports = require('./build/Release/sosfuse3.node');
} catch (err) {
  // Not built: say why where we can tell (an old or missing libfuse 3).
  const problem = require('./check-libfuse.cjs').libfuseProblem();
  if (problem === undefined) throw err;
  throw new Error(problem, { cause: err });
}
