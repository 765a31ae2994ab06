/**
 * The name editing mode stores our version under when the object changed
 * in the bucket while it was edited here: `report (conflict 2026-12-06
 * 221530).pdf`, beside the other writer's version, in local time as a user
 * reads it; ` 2`, ` 3` when that name is taken too. The extension stays
 * last so the copy opens with the same program.
 */
import { MAX_NAME_BYTES } from './names.js';

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** `name` with a conflict mark; `attempt` above 1 numbers a second conflict in the same second. */
export function conflictName(name: string, at: Date, attempt = 1): string {
  const stamp = `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())} ${pad(at.getHours())}${pad(at.getMinutes())}${pad(at.getSeconds())}`;
  const mark = ` (conflict ${stamp}${attempt > 1 ? ` ${attempt}` : ''})`;
  // A leading dot is a hidden file's name, not an extension (.bashrc);
  // a compressed tar keeps both parts (archive (conflict …).tar.gz).
  const tar = /\.tar\.[a-z0-9]{1,4}$/i.exec(name);
  const dot = tar && tar.index > 0 ? tar.index : name.lastIndexOf('.');
  const hasExtension = dot > 0 && dot < name.length - 1 && name.length - dot <= 16;
  let stem = hasExtension ? name.slice(0, dot) : name;
  const ext = hasExtension ? name.slice(dot) : '';
  // Shorten the stem, never the mark or the extension, to stay a valid name.
  while (stem.length > 1 && Buffer.byteLength(stem + mark + ext) > MAX_NAME_BYTES) stem = [...stem].slice(0, -1).join('');
  return stem + mark + ext;
}
