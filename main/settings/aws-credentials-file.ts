/** ~/.aws/credentials, where "Import" reads key pairs. */
import os from 'node:os';
import path from 'node:path';

export function defaultCredentialsFile(env: NodeJS.ProcessEnv = process.env, home: string = os.homedir()): string {
  const fromEnv = env['AWS_SHARED_CREDENTIALS_FILE'];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : path.join(home, '.aws', 'credentials');
}

export interface CredentialsSection {
  name: string;
  values: Map<string, string>;
}

/**
 * The INI dialect of the AWS shared credentials file: `[name]` sections,
 * `key = value` lines, `#` and `;` comment lines. In the config file
 * sections are `[profile name]`; that form is accepted too. Keys are
 * compared lower-case, as the SDKs do.
 */
export function parseCredentialsFile(text: string): CredentialsSection[] {
  const sections: CredentialsSection[] = [];
  let current: CredentialsSection | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[\s*(?:profile\s+)?([^\]]*?)\s*\]$/.exec(line);
    if (header) {
      const name = header[1] ?? '';
      current = sections.find((s) => s.name === name);
      if (current === undefined) {
        current = { name, values: new Map() };
        sections.push(current);
      }
      continue;
    }
    const eq = line.indexOf('=');
    if (current === undefined || eq <= 0) continue;
    current.values.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1).trim());
  }
  return sections;
}
