/**
 * "Start at login" (README.md, "Desktop app"): on Linux an XDG autostart
 * entry, `$XDG_CONFIG_HOME/autostart/sos-mount.desktop` (XDG Autostart
 * Specification: the desktop starts every entry there at login); on macOS
 * and Windows Electron's `app.setLoginItemSettings`, passed in so this
 * module stays plain Node.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

export const AUTOSTART_FILE = 'sos-mount.desktop';
/** Given on the command line of a login start, so the app knows it was not started by the user. */
export const LOGIN_FLAG = '--at-login';

/** The slice of Electron's login item API that the app uses (macOS and Windows). */
export interface LoginItemApi {
  setLoginItemSettings(settings: { openAtLogin: boolean; openAsHidden?: boolean; path?: string; args?: string[] }): void;
  getLoginItemSettings(options?: { path?: string; args?: string[] }): { openAtLogin: boolean };
}

export interface AutostartOptions {
  platform?: NodeJS.Platform;
  env?: NodeJS.ProcessEnv;
  home?: string;
  /** The command that starts the app: the Electron executable (or, in development, Electron plus the app folder). */
  command: string;
  args?: readonly string[];
  /** Required on macOS and Windows. */
  loginItems?: LoginItemApi | undefined;
}

export interface Autostart {
  isEnabled(): Promise<boolean>;
  setEnabled(enabled: boolean): Promise<void>;
  /** Where the setting lives, for messages and tests: the .desktop file, or "login items". */
  readonly location: string;
}

/** `$XDG_CONFIG_HOME/autostart`, falling back to `~/.config/autostart` when unset or not absolute (as the spec says). */
export function autostartDirectory(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const configHome = env['XDG_CONFIG_HOME'];
  return path.join(configHome && path.isAbsolute(configHome) ? configHome : path.join(home, '.config'), 'autostart');
}

/**
 * Quotes one argument for a desktop entry's Exec key (Desktop Entry
 * Specification, "The Exec key"): arguments with reserved characters are
 * double-quoted with `"`, `` ` ``, `$` and `\` backslash-escaped; `%` is
 * doubled since it starts a field code. The file format then escapes
 * backslashes once more, as for every string value.
 */
export function quoteExecArg(arg: string): string {
  const doubled = arg.replace(/%/g, '%%');
  const plain = /^[A-Za-z0-9_@%+=:,./-]+$/.test(doubled);
  const quoted = plain ? doubled : `"${doubled.replace(/(["`$\\])/g, '\\$1')}"`;
  return quoted.replace(/\\/g, '\\\\');
}

export function desktopEntry(command: string, args: readonly string[]): string {
  return [
    '[Desktop Entry]',
    'Type=Application',
    'Version=1.0',
    'Name=SOS Mount',
    'Comment=Mount S3 buckets (Exoscale SOS) as folders',
    `Exec=${[command, ...args].map(quoteExecArg).join(' ')}`,
    'Icon=sos-mount',
    'Terminal=false',
    'Categories=Utility;',
    'X-GNOME-Autostart-enabled=true',
    '',
  ].join('\n');
}

class XdgAutostart implements Autostart {
  readonly location: string;
  private readonly command: string;
  private readonly args: readonly string[];

  constructor(options: AutostartOptions) {
    this.location = path.join(autostartDirectory(options.env ?? process.env, options.home ?? homedir()), AUTOSTART_FILE);
    this.command = options.command;
    this.args = [...(options.args ?? []), LOGIN_FLAG];
  }

  async isEnabled(): Promise<boolean> {
    let text: string;
    try {
      text = await readFile(this.location, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
    // A user (or GNOME Tweaks) may switch the entry off in place instead of deleting it.
    return !/^Hidden\s*=\s*true\s*$/m.test(text) && !/^X-GNOME-Autostart-enabled\s*=\s*false\s*$/m.test(text);
  }

  async setEnabled(enabled: boolean): Promise<void> {
    if (!enabled) {
      await rm(this.location, { force: true });
      return;
    }
    await mkdir(path.dirname(this.location), { recursive: true });
    await writeFile(this.location, desktopEntry(this.command, this.args), { mode: 0o644 });
  }
}

class LoginItemAutostart implements Autostart {
  readonly location = 'login items';
  private readonly api: LoginItemApi;
  private readonly args: string[];
  private readonly platform: NodeJS.Platform;

  constructor(api: LoginItemApi, options: AutostartOptions, platform: NodeJS.Platform) {
    this.api = api;
    this.platform = platform;
    this.args = [...(options.args ?? []), LOGIN_FLAG];
  }

  async isEnabled(): Promise<boolean> {
    // Windows matches the registry entry by path and args; macOS ignores both.
    return this.api.getLoginItemSettings(this.platform === 'win32' ? { args: this.args } : undefined).openAtLogin;
  }

  async setEnabled(enabled: boolean): Promise<void> {
    this.api.setLoginItemSettings(this.platform === 'win32'
      ? { openAtLogin: enabled, args: this.args }
      // macOS: no window is ever opened at start, so "hidden" adds nothing.
      : { openAtLogin: enabled });
  }
}

export function createAutostart(options: AutostartOptions): Autostart {
  const platform = options.platform ?? process.platform;
  if (platform === 'darwin' || platform === 'win32') {
    if (!options.loginItems) throw new Error(`start at login on ${platform} needs Electron's login item settings`);
    return new LoginItemAutostart(options.loginItems, options, platform);
  }
  return new XdgAutostart(options);
}
