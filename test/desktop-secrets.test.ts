/**
 * Secrets: KeytarSecretStore against a real Secret Service (GNOME Keyring
 * on a private D-Bus bus), and the in-memory store unit tests use.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { KeytarSecretStore, MemorySecretStore, SecretStoreError } from '../main/secret-store.js';
import { SECRET_SERVICE } from '../main/model.js';
import { startSecretService, type TestSecretService } from './helpers/secret-service.js';

/** Asks the Secret Service itself (not keytar) which items carry these attributes. */
function searchItems(address: string, attributes: Record<string, string>): Promise<string> {
  const dict = Object.entries(attributes).flat().map((s) => s.replace(/,/g, '\\,')).join(',');
  return new Promise((resolve, reject) => {
    execFile('dbus-send', ['--session', '--print-reply', '--dest=org.freedesktop.secrets', '/org/freedesktop/secrets', 'org.freedesktop.Secret.Service.SearchItems', `dict:string:string:${dict}`],
      { env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: address } }, (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(stdout)));
  });
}

describe('KeytarSecretStore against a real Secret Service', () => {
  let service: TestSecretService;

  before(async () => {
    service = await startSecretService();
    service.use();
  });

  after(async () => {
    await service?.stop();
  });

  test('stores a secret under service sos-mount and account = profile name, and reads it back', async () => {
    const store = new KeytarSecretStore();
    await store.set('exomount', 'tutorial-api-secret');
    assert.equal(await store.get('exomount'), 'tutorial-api-secret');
    const found = await searchItems(service.address, { service: SECRET_SERVICE, account: 'exomount' });
    assert.match(found, /object path "\/org\/freedesktop\/secrets\/collection\/login\/\d+"/, 'the keyring holds an item with those attributes');
  });

  test('replacing a secret keeps one entry with the new value', async () => {
    const store = new KeytarSecretStore();
    await store.set('replace-me', 'first');
    await store.set('replace-me', 'second');
    assert.equal(await store.get('replace-me'), 'second');
    const found = await searchItems(service.address, { service: SECRET_SERVICE, account: 'replace-me' });
    assert.equal(found.match(/object path "\/org\/freedesktop\/secrets\/collection\/login\/\d+"/g)?.length, 1, found);
  });

  test('a profile without a secret reads as undefined; delete says whether something was deleted', async () => {
    const store = new KeytarSecretStore();
    assert.equal(await store.get('never-stored'), undefined);
    await store.set('to-delete', 's3cr3t');
    assert.equal(await store.delete('to-delete'), true);
    assert.equal(await store.get('to-delete'), undefined);
    assert.equal(await store.delete('to-delete'), false);
  });

  test('profiles are separate accounts; another service name does not see them', async () => {
    const store = new KeytarSecretStore();
    const other = new KeytarSecretStore({ service: 'sos-mount-test-other' });
    await store.set('alpha', 'secret-a');
    await store.set('beta', 'secret-b');
    assert.equal(await store.get('alpha'), 'secret-a');
    assert.equal(await store.get('beta'), 'secret-b');
    assert.equal(await other.get('alpha'), undefined);
  });

  test('an empty secret or profile name is refused with a reason', async () => {
    const store = new KeytarSecretStore();
    await assert.rejects(store.set('alpha', ''), (err: unknown) => err instanceof SecretStoreError && /empty secret/.test(err.message));
    await assert.rejects(store.get(''), (err: unknown) => err instanceof SecretStoreError && /profile name/.test(err.message));
  });
});

describe('MemorySecretStore', () => {
  test('keeps secrets per profile and forgets them on delete', async () => {
    const store = new MemorySecretStore({ a: '1' });
    assert.equal(await store.get('a'), '1');
    await store.set('b', '2');
    assert.equal(await store.get('b'), '2');
    assert.equal(await store.delete('a'), true);
    assert.equal(await store.delete('a'), false);
    assert.equal(await store.get('a'), undefined);
  });
});
