// Loads the compiled binding; the typed wrapper is app/fs/fuse3-session.ts.
module.exports = require('./build/Release/sosfuse3.node');
