/**
 * The key-to-tree mapping rules (README.md, "What is not POSIX": names): which S3 keys become
 * which file names, and which are hidden because no file name can stand for
 * them. One module, so the listing, the lookups and the reference tests agree.
 */

/** Linux NAME_MAX. */
export const MAX_NAME_BYTES = 255;
/** S3's key length limit. */
export const MAX_KEY_BYTES = 1024;

/**
 * A name the file system can show: not empty, not `.` or `..`, no `/` or
 * NUL, at most 255 bytes. Keys with such segments (`a//b`, `a/./b`, a name
 * of 300 bytes) are hidden, never a crash.
 */
export function isValidName(name: string): boolean {
  if (name === '' || name === '.' || name === '..') return false;
  if (name.includes('/') || name.includes('\0')) return false;
  return Buffer.byteLength(name, 'utf8') <= MAX_NAME_BYTES;
}

/** Splits a FUSE path ("/a/b") into its names; the root is []. */
export function pathNames(fusePath: string): string[] {
  return fusePath.split('/').filter((s) => s !== '');
}

export function parentPath(fusePath: string): string {
  const names = pathNames(fusePath);
  names.pop();
  return '/' + names.join('/');
}

export function baseName(fusePath: string): string {
  const names = pathNames(fusePath);
  return names[names.length - 1] ?? '';
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? `/${name}` : `${dir}/${name}`;
}

/** The object key of a file at `fusePath` under the mount's prefix. */
export function fileKey(prefix: string, fusePath: string): string {
  return prefix + pathNames(fusePath).join('/');
}

/** The key prefix that lists the folder at `fusePath` ('' or ending in '/'). */
export function dirPrefix(prefix: string, fusePath: string): string {
  const names = pathNames(fusePath);
  return names.length === 0 ? prefix : `${prefix}${names.join('/')}/`;
}

/** Whether `fusePath` lies inside folder `dir` (at any depth). */
export function isInside(fusePath: string, dir: string): boolean {
  if (dir === '/') return fusePath !== '/';
  return fusePath.startsWith(dir + '/');
}

/**
 * Orders strings as S3 orders keys: by their UTF-8 bytes. JavaScript's
 * comparison orders UTF-16 code units, which differs only where a character
 * beyond U+FFFF (a surrogate pair) meets one in U+E000..U+FFFF.
 */
export function compareKeyOrder(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys && (xs ? y : x) >= 0xe000) return xs ? 1 : -1;
    return x - y;
  }
  return a.length - b.length;
}
