/**
 * "Test connection" and the bucket picker, through the real page: each
 * outcome in plain words, from a real local S3 server (OK, bucket not found,
 * wrong secret), a port nobody listens on (unreachable), and a tiny fake S3
 * endpoint answering 403 with an x-amz-request-id (access denied, clock
 * skew), for what the local server cannot produce.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { IpcChannel } from '../main/ipc-contract.js';
import { KeytarSecretStore } from '../main/secret-store.js';
import { startS3Server, type TestS3Server } from './helpers/s3-server.js';
import { closedPort, startErrorEndpoint, type ErrorEndpoint } from './helpers/error-endpoint.js';
import { startSecretService, type TestSecretService } from './helpers/secret-service.js';
import {
  launchBrowser,
  openSettingsPage,
  startStaticServer,
  waitForText,
  type Browser,
  type SettingsPage,
  type StaticServer,
} from './helpers/settings-page.js';

const GOOD = { accessKeyId: 'EXOCONNECT00000001', secretAccessKey: 'connect-secret-Vb52kQ9wTz' };

let keyring: TestSecretService;
let server: TestS3Server;
let denied: ErrorEndpoint;
let skewed: ErrorEndpoint;
let browser: Browser;
let site: StaticServer;
let ui: SettingsPage;
const secrets = new KeytarSecretStore({ service: 'sos-mount-test-connection' });

before(async () => {
  keyring = await startSecretService();
  keyring.use();
  [server, denied, skewed, browser, site] = await Promise.all([
    startS3Server({ buckets: ['alpha', 'beta', 'gamma'], credentials: [GOOD] }),
    startErrorEndpoint({ status: 403, code: 'AccessDenied', message: 'Access Denied', requestId: 'DENY-7F3A21' }),
    startErrorEndpoint({
      status: 403,
      code: 'RequestTimeTooSkewed',
      message: 'The difference between the request time and the current time is too large.',
      requestId: 'SKEW-0B9C44',
      extra: { RequestTime: '20200101T000000Z', ServerTime: new Date().toISOString(), MaxAllowedSkewMilliseconds: '900000' },
    }),
    launchBrowser(),
    startStaticServer(),
  ]);
  ui = await openSettingsPage(browser, site, { secrets, connectionTimeoutMs: 10_000 });
  for (const [name, secret] of [['good', GOOD.secretAccessKey], ['wrongsecret', 'not-the-secret-000000'], ['gone', GOOD.secretAccessKey]] as const) {
    const response = await ui.invoke(IpcChannel.SaveProfile, [{ name, accessKeyId: GOOD.accessKeyId, secret, isNew: true }]);
    assert.equal((response as { ok: boolean }).ok, true, JSON.stringify(response));
  }
  // A profile whose keychain entry went missing (deleted with another tool).
  await secrets.delete('gone');
  await ui.reload();
  await ui.page.getByRole('button', { name: 'Add Mount…' }).click();
});

after(async () => {
  await ui?.close();
  for (const name of ['good', 'wrongsecret', 'gone']) await secrets.delete(name).catch(() => false);
  await browser?.close();
  await site?.stop();
  await Promise.all([server?.stop(), denied?.stop(), skewed?.stop()]);
  await keyring?.stop();
});

/** Fills the form's connection fields and presses Test Connection; returns [outcome, message]. */
async function testConnection(target: { profile: string; endpoint: string; bucket: string }): Promise<[string | undefined, string]> {
  const form = ui.page.locator('#mount-form');
  await form.getByLabel('Profile', { exact: true }).selectOption(target.profile);
  await form.getByRole('radio', { name: 'Custom endpoint' }).check();
  await form.getByLabel('Endpoint URL').fill(target.endpoint);
  await form.getByLabel(/Path-style addressing/).check();
  await form.getByLabel('Bucket', { exact: true }).fill(target.bucket);
  // Changing the form clears the last answer: it no longer describes what the form says.
  await waitForText(ui.page, '#m-test-result', '');
  await form.getByRole('button', { name: 'Test Connection' }).click();
  await ui.page.waitForFunction(() => {
    const result = (globalThis as unknown as { document: { getElementById(id: string): { dataset: Record<string, string> } | null } }).document.getElementById('m-test-result');
    return result !== null && result.dataset['outcome'] !== undefined && result.dataset['outcome'] !== 'pending';
  }, undefined, { timeout: 30_000 });
  const outcome = await ui.page.locator('#m-test-result').getAttribute('data-outcome');
  return [outcome ?? undefined, (await ui.page.locator('#m-test-result').textContent()) ?? ''];
}

describe('test connection says what happened, in plain words', () => {
  test('OK with the number of buckets', async () => {
    assert.deepEqual(await testConnection({ profile: 'good', endpoint: server.endpoint, bucket: '' }), ['ok', 'Connected: 3 buckets.']);
  });

  test('OK, and the bucket is there', async () => {
    assert.deepEqual(await testConnection({ profile: 'good', endpoint: server.endpoint, bucket: 'beta' }), ['ok', "Connected: 3 buckets. Bucket 'beta' is there."]);
  });

  test('bucket not found', async () => {
    assert.deepEqual(
      await testConnection({ profile: 'good', endpoint: server.endpoint, bucket: 'no-such-bucket' }),
      ['bucket-not-found', "Connected (3 buckets), but there is no bucket 'no-such-bucket'."],
    );
  });

  test('wrong secret', async () => {
    const [outcome, message] = await testConnection({ profile: 'wrongsecret', endpoint: server.endpoint, bucket: 'beta' });
    assert.equal(outcome, 'invalid-credentials');
    assert.match(message, /^The server rejected the access key or secret( \(request id [^)]+\))?\. Check the profile's key and replace its secret\.$/);
  });

  test('wrong endpoint: nothing listens on the port', async () => {
    const port = await closedPort();
    assert.deepEqual(
      await testConnection({ profile: 'good', endpoint: `http://127.0.0.1:${port}`, bucket: 'beta' }),
      ['unreachable', `Could not reach 127.0.0.1:${port} (ECONNREFUSED). Check the zone or endpoint URL and your network.`],
    );
  });

  test('access denied, with the request id', async () => {
    assert.deepEqual(
      await testConnection({ profile: 'good', endpoint: denied.endpoint, bucket: 'beta' }),
      ['access-denied', 'Access denied (request id DENY-7F3A21). The key is valid but may not do this; check its permissions.'],
    );
    // ListBuckets, then HeadBucket: a key limited to one bucket may still reach that bucket.
    assert.deepEqual(denied.requests.slice(-2).map((r) => r.split(' ')[0]), ['GET', 'HEAD']);
  });

  test('clock skew, with the request id', async () => {
    assert.deepEqual(
      await testConnection({ profile: 'good', endpoint: skewed.endpoint, bucket: '' }),
      ['clock-skew', "This computer's clock differs too much from the server's (request id SKEW-0B9C44). Set the date and time automatically, then try again."],
    );
  });

  test('no secret in the keychain', async () => {
    assert.deepEqual(
      await testConnection({ profile: 'gone', endpoint: server.endpoint, bucket: '' }),
      ['no-secret', "The keychain has no secret for profile 'gone'. Store it under Profiles."],
    );
  });
});

describe('the bucket picker', () => {
  test('lists the buckets of the chosen profile and endpoint, and picking one fills the field', async () => {
    const form = ui.page.locator('#mount-form');
    await form.getByLabel('Profile', { exact: true }).selectOption('good');
    await form.getByRole('radio', { name: 'Custom endpoint' }).check();
    await form.getByLabel('Endpoint URL').fill(server.endpoint);
    await form.getByLabel('Bucket', { exact: true }).fill('');
    await form.getByRole('button', { name: 'Choose a bucket' }).click();
    await waitForText(ui.page, '#m-bucket-picker-title', 'Choose a bucket (3 buckets)');
    assert.deepEqual(await ui.page.locator('#m-bucket-picker-list button').allTextContents(), ['alpha', 'beta', 'gamma']);
    // Keyboard: focus is on the first bucket; Tab to the next, Enter picks it.
    assert.equal(await ui.page.evaluate(() => (globalThis as unknown as { document: { activeElement: { textContent: string } | null } }).document.activeElement?.textContent), 'alpha');
    await ui.page.keyboard.press('Tab');
    await ui.page.keyboard.press('Enter');
    assert.equal(await form.getByLabel('Bucket', { exact: true }).inputValue(), 'beta');
    assert.equal(await ui.page.locator('#m-bucket-picker').isHidden(), true);
  });

  test('says why it cannot list, in the same words as Test Connection', async () => {
    const form = ui.page.locator('#mount-form');
    await form.getByLabel('Profile', { exact: true }).selectOption('wrongsecret');
    await form.getByRole('button', { name: 'Choose a bucket' }).click();
    await waitForText(ui.page, '#m-bucket-picker-title', /^The server rejected the access key or secret/);
    assert.equal(await ui.page.locator('#m-bucket-picker-list button').count(), 0);
    // Focus stayed on the button; Escape closes the picker.
    assert.equal(await ui.page.evaluate(() => (globalThis as unknown as { document: { activeElement: { id: string } | null } }).document.activeElement?.id), 'm-pick-bucket');
    await ui.page.keyboard.press('Escape');
    assert.equal(await ui.page.locator('#m-bucket-picker').isHidden(), true);

    await form.getByLabel('Profile', { exact: true }).selectOption('good');
    await form.getByLabel('Endpoint URL').fill(denied.endpoint);
    await form.getByRole('button', { name: 'Choose a bucket' }).click();
    await waitForText(ui.page, '#m-bucket-picker-title', 'Access denied (request id DENY-7F3A21). The key is valid but may not do this; check its permissions.');
  });
});
