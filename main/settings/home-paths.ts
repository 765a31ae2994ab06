/** Paths under the user's home folder, as the settings page shows them (`~/...`) and as people type them. */
import path from 'node:path';

export function displayPath(file: string, home: string): string {
  return file === home || file.startsWith(home + path.sep) ? `~${file.slice(home.length)}` : file;
}

/** A leading `~/` (as the page shows paths under home, and as people type them) means the home folder. */
export function expandHome(file: string, home: string): string {
  if (file === '~') return home;
  return file.startsWith('~/') ? path.join(home, file.slice(2)) : file;
}
