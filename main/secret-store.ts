/**
 * API secrets, kept in the OS keychain and nowhere else (keytar:
 * service `sos-mount`, account = profile name).
 * macOS Keychain, Windows Credential Vault, and on Linux the Secret Service
 * (GNOME Keyring, KWallet) through libsecret.
 */
import { SECRET_SERVICE, type SecretStore } from './model.js';

type Keytar = typeof import('keytar');

/** The keychain could not be reached or refused the operation. */
export class SecretStoreError extends Error {
  override readonly name = 'SecretStoreError';
}

export class KeytarSecretStore implements SecretStore {
  private keytar: Promise<Keytar> | undefined;
  private readonly service: string;

  /** `service` is for tests that must not touch the user's real `sos-mount` entries. */
  constructor(options: { service?: string } = {}) {
    this.service = options.service ?? SECRET_SERVICE;
  }

  // keytar is a native module, loaded on first use: a build for the wrong
  // Node/Electron ABI then fails one keychain call with its reason instead
  // of keeping the whole app (or any module importing this one) from starting.
  private load(): Promise<Keytar> {
    this.keytar ??= import('keytar').then(
      (m) => ((m as { default?: Keytar }).default ?? m),
      (err: unknown) => {
        this.keytar = undefined;
        throw new SecretStoreError(`the keychain library (keytar) cannot be loaded: ${errorMessage(err)}`, { cause: err });
      },
    );
    return this.keytar;
  }

  private async call<T>(what: string, profile: string, fn: (k: Keytar) => Promise<T>): Promise<T> {
    if (profile === '') throw new SecretStoreError('a profile name is needed to address the keychain');
    const keytar = await this.load();
    try {
      return await fn(keytar);
    } catch (err) {
      // The message never includes the secret: keytar's errors come from the OS and name the failure only.
      throw new SecretStoreError(`the keychain could not ${what} for profile ${profile}: ${errorMessage(err)}`, { cause: err });
    }
  }

  async get(profile: string): Promise<string | undefined> {
    const secret = await this.call('read the secret', profile, (k) => k.getPassword(this.service, profile));
    return secret ?? undefined;
  }

  async set(profile: string, secret: string): Promise<void> {
    if (secret === '') throw new SecretStoreError('an empty secret cannot be stored; delete the profile\'s secret instead');
    await this.call('store the secret', profile, (k) => k.setPassword(this.service, profile, secret));
  }

  async delete(profile: string): Promise<boolean> {
    return this.call('delete the secret', profile, (k) => k.deletePassword(this.service, profile));
  }
}

/** For unit tests and for a session without a keychain; forgets everything on exit. */
export class MemorySecretStore implements SecretStore {
  private readonly secrets = new Map<string, string>();

  constructor(initial: Record<string, string> = {}) {
    for (const [profile, secret] of Object.entries(initial)) this.secrets.set(profile, secret);
  }

  async get(profile: string): Promise<string | undefined> {
    return this.secrets.get(profile);
  }

  async set(profile: string, secret: string): Promise<void> {
    if (secret === '') throw new SecretStoreError('an empty secret cannot be stored; delete the profile\'s secret instead');
    this.secrets.set(profile, secret);
  }

  async delete(profile: string): Promise<boolean> {
    return this.secrets.delete(profile);
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
